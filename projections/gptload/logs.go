package gptload

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"gpt-load/domain"
	"gpt-load/projections/sqlstore"
)

// logBatch is how many request logs one insert writes.
const logBatch = 500

// importLogs brings gpt-load's request logs, hourly stats and key usage into the SQL
// store. Each insert skips what is there already (a log by its id, a stat by its hour and
// group, a usage by its group and key), so a second run writes nothing. Key values of logs
// are opened with gpt-load's key and sealed with ours, their hashes made ours; group ids
// follow the groups' ids here.
func (im *Import) importLogs(ctx context.Context, ids map[uint64]uint64, usage []keyUse) (LogSummary, error) {
	var sum LogSummary
	group := func(id uint64) uint64 {
		if v, ok := ids[id]; ok {
			return v
		}
		return id
	}
	if im.src.hasTable(ctx, "request_logs") {
		rows := make([]sqlstore.RequestLog, 0, logBatch)
		for after := ""; ; {
			page, err := im.src.logPage(ctx, after, logBatch)
			if err != nil {
				return sum, err
			}
			if len(page) == 0 {
				break
			}
			after = page[len(page)-1].ID
			rows = rows[:0]
			for _, l := range page {
				row, err := im.logRow(l, group)
				if err != nil {
					return sum, err
				}
				rows = append(rows, row)
			}
			res, err := im.t.DB.NewInsert().Model(&rows).Ignore().Exec(ctx)
			if err != nil {
				return sum, fmt.Errorf("write request logs: %w", err)
			}
			n, _ := res.RowsAffected()
			sum.RequestLogs += int(n)
			sum.Read += len(page)
			if len(page) < logBatch {
				break
			}
		}
	}
	stats, err := im.src.hourlyStats(ctx)
	if err != nil {
		return sum, err
	}
	for start := 0; start < len(stats); start += logBatch {
		part := stats[start:min(start+logBatch, len(stats))]
		rows := make([]sqlstore.GroupHourlyStat, len(part))
		for i, s := range part {
			rows[i] = sqlstore.GroupHourlyStat{Time: s.Time, GroupID: group(s.GroupID), SuccessCount: s.Success, FailureCount: s.Failure}
		}
		res, err := im.t.DB.NewInsert().Model(&rows).ExcludeColumn("id").Ignore().Exec(ctx)
		if err != nil {
			return sum, fmt.Errorf("write hourly stats: %w", err)
		}
		n, _ := res.RowsAffected()
		sum.HourlyStats += int(n)
	}
	// Key usage: the request count and last use gpt-load kept on each key, under the key's
	// id here.
	rows := make([]sqlstore.KeyUsage, 0, len(usage))
	im.t.State.Read(func(s *domain.State) {
		for _, u := range usage {
			id := u.srcID
			if ks := s.Keys(u.groupID); ks != nil {
				if k, ok := ks.ByHash(u.hash); ok {
					id = k.ID
				}
			}
			last := u.last.LastUsedAt
			if last.IsZero() {
				last = u.last.UpdatedAt
			}
			rows = append(rows, sqlstore.KeyUsage{GroupID: u.groupID, KeyHash: u.hash.String(), KeyID: id,
				RequestCount: u.count, LastUsedAt: last.UTC()})
		}
	})
	for start := 0; start < len(rows); start += logBatch {
		part := rows[start:min(start+logBatch, len(rows))]
		res, err := im.t.DB.NewInsert().Model(&part).Ignore().Exec(ctx)
		if err != nil {
			return sum, fmt.Errorf("write key usage: %w", err)
		}
		n, _ := res.RowsAffected()
		sum.KeyUsage += int(n)
	}
	return sum, nil
}

// logRow turns a gpt-load request log into ours. A key value that does not open with
// gpt-load's key (written before a change of it) is left out, hash included.
func (im *Import) logRow(l srcLog, group func(uint64) uint64) (sqlstore.RequestLog, error) {
	var value, hash string
	if l.KeyValue != "" {
		if plain, err := im.theirs.Decrypt(l.KeyValue); err == nil {
			sealed, err := im.t.Cipher.Encrypt(plain)
			if err != nil {
				return sqlstore.RequestLog{}, err
			}
			value, hash = sealed, im.t.Cipher.Hash(plain).String()
		}
	}
	parent := l.ParentGroupID
	if parent != 0 {
		parent = group(parent)
	}
	return sqlstore.RequestLog{
		ID: cut(l.ID, 36), Timestamp: l.Timestamp.UTC(), GroupID: group(l.GroupID), GroupName: cut(l.GroupName, sqlstore.MaxGroupNameLen),
		ParentGroupID: parent, ParentGroupName: cut(l.ParentGroupName, sqlstore.MaxGroupNameLen),
		KeyValue: value, KeyHash: hash, Model: cut(l.Model, 1<<16), IsSuccess: l.IsSuccess,
		SourceIP: cut(l.SourceIP, sqlstore.MaxSourceIPLen), StatusCode: l.StatusCode,
		RequestPath: cut(l.RequestPath, sqlstore.MaxRequestPathLen), DurationMs: l.DurationMs,
		ErrorMessage: cut(l.ErrorMessage, 1<<16), UserAgent: cut(l.UserAgent, 1<<12), RequestType: cut(l.RequestType, sqlstore.MaxRequestTypeLen),
		UpstreamAddr: cut(l.UpstreamAddr, sqlstore.MaxUpstreamAddrLen), IsStream: l.IsStream,
		RequestBody: cut(l.RequestBody, sqlstore.MaxRequestBodyLen),
	}, nil
}

// cut drops NUL characters and invalid UTF-8 from s (PostgreSQL refuses both in text) and
// keeps at most n bytes of it, on a character boundary.
func cut(s string, n int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, ""), "\x00", "")
	return cutBytes(s, n)
}

// cutBytes keeps at most n bytes of s, on a character boundary.
func cutBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
