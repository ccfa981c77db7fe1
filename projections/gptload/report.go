package gptload

import (
	"fmt"
	"io"
	"strings"

	"gpt-load/domain"
)

// Write prints the summary for a person: settings, groups, keys by status, logs.
func (s Summary) Write(w io.Writer) {
	if s.DryRun {
		fmt.Fprintln(w, "Dry run: nothing was written. The import would bring:")
	}
	if s.Empty() {
		fmt.Fprintln(w, "Nothing to import: everything in this gpt-load database is here already.")
	}
	if len(s.Settings) > 0 {
		fmt.Fprintf(w, "settings: %d changed (%s)\n", len(s.Settings), strings.Join(s.Settings, ", "))
	} else {
		fmt.Fprintln(w, "settings: none to change")
	}
	if len(s.Unknown) > 0 {
		fmt.Fprintf(w, "settings not imported (unknown here): %s\n", strings.Join(s.Unknown, ", "))
	}
	var created, replaced, exists, renumbered int
	for _, g := range s.Groups {
		switch g.Outcome {
		case domain.ImportCreated:
			created++
		case domain.ImportReplaced:
			replaced++
		case domain.ImportExists:
			exists++
		}
		if g.Renumbered {
			renumbered++
		}
	}
	fmt.Fprintf(w, "groups: %d created, %d replaced, %d left alone\n", created, replaced, exists)
	for _, g := range s.Groups {
		line := fmt.Sprintf("  %-24s id %d: %s", g.Name, g.ID, g.Outcome)
		switch {
		case g.Outcome == domain.ImportExists:
			line += " here already, left alone (--overwrite replaces it)"
		case g.Renumbered:
			line += fmt.Sprintf(" (its id %d is taken here)", g.SourceID)
		}
		fmt.Fprintln(w, line)
	}
	if s.MissingMembers > 0 {
		fmt.Fprintf(w, "aggregate members not found: %d\n", s.MissingMembers)
	}
	k := s.Keys
	fmt.Fprintf(w, "keys: %d imported (%d active, %d invalid)", k.Imported(), k.Active, k.Invalid)
	if k.Existing > 0 {
		fmt.Fprintf(w, ", %d here already", k.Existing)
	}
	if k.Renumbered > 0 {
		fmt.Fprintf(w, ", %d with a new id (theirs was taken here)", k.Renumbered)
	}
	if k.LeftAlone > 0 {
		fmt.Fprintf(w, ", %d in groups left alone", k.LeftAlone)
	}
	fmt.Fprintln(w)
	if l := s.Logs; l != nil {
		if s.DryRun {
			fmt.Fprintf(w, "logs: %d request logs, %d hourly stats\n", l.RequestLogs, l.HourlyStats)
		} else {
			fmt.Fprintf(w, "logs: %d request logs written (%d read), %d hourly stats, %d key usage rows\n",
				l.RequestLogs, l.Read, l.HourlyStats, l.KeyUsage)
		}
	}
}
