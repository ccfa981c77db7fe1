package domain

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// GroupInput is the body of a group create or update. A nil pointer or nil RawMessage means
// the field was absent; a RawMessage holding `null` means it was sent as null.
type GroupInput struct {
	Name                *string         `json:"name"`
	DisplayName         *string         `json:"display_name"`
	Description         *string         `json:"description"`
	GroupType           *string         `json:"group_type"`
	Upstreams           json.RawMessage `json:"upstreams"`
	ChannelType         *string         `json:"channel_type"`
	Sort                *int            `json:"sort"`
	TestModel           *string         `json:"test_model"`
	ValidationEndpoint  *string         `json:"validation_endpoint"`
	ParamOverrides      json.RawMessage `json:"param_overrides"`
	ModelRedirectRules  json.RawMessage `json:"model_redirect_rules"`
	ModelRedirectStrict *bool           `json:"model_redirect_strict"`
	Config              json.RawMessage `json:"config"`
	HeaderRules         json.RawMessage `json:"header_rules"`
	ProxyKeys           *string         `json:"proxy_keys"`
}

func isNull(raw json.RawMessage) bool {
	return raw == nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// fieldErrs collects field errors of one command.
type fieldErrs []FieldError

func (fe *fieldErrs) add(err error) {
	if err == nil {
		return
	}
	if fs := ErrorFields(err); len(fs) > 0 {
		*fe = append(*fe, fs...)
		return
	}
	*fe = append(*fe, FieldError{Message: err.Error()})
}

func (fe *fieldErrs) addf(field, format string, args ...any) {
	*fe = append(*fe, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

func parseParamOverrides(raw json.RawMessage) (json.RawMessage, error) {
	if isNull(raw) {
		return nil, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, Invalid(FieldError{Field: "param_overrides", Message: "must be a JSON object"})
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, Invalid(FieldError{Field: "param_overrides", Message: err.Error()})
	}
	if buf.Len() > MaxParamOverridesBytes {
		return nil, Invalid(FieldError{Field: "param_overrides", Message: fmt.Sprintf("must be at most %d bytes of JSON, got %d", MaxParamOverridesBytes, buf.Len())})
	}
	return buf.Bytes(), nil
}

func parseRedirectRules(raw json.RawMessage) (map[string]string, error) {
	var rules map[string]string
	if !isNull(raw) {
		var buf bytes.Buffer
		if json.Compact(&buf, raw) == nil && buf.Len() > MaxRedirectRulesBytes {
			return nil, Invalid(FieldError{Field: "model_redirect_rules", Message: fmt.Sprintf("must be at most %d bytes of JSON, got %d", MaxRedirectRulesBytes, buf.Len())})
		}
		if err := json.Unmarshal(raw, &rules); err != nil {
			return nil, Invalid(FieldError{Field: "model_redirect_rules", Message: "must be an object of model names to model names"})
		}
	}
	return ValidateRedirectRules(rules)
}

func parseHeaderRules(raw json.RawMessage) ([]HeaderRule, error) {
	var rules []HeaderRule
	if !isNull(raw) {
		if err := json.Unmarshal(raw, &rules); err != nil {
			return nil, Invalid(FieldError{Field: "header_rules", Message: "must be an array of {key, value, action}"})
		}
	}
	return NormalizeHeaderRules(rules)
}

// DecideCreateGroup validates a new group (API.md 2.7) against the state and gives it the
// next group id.
func DecideCreateGroup(s *State, in GroupInput) (GroupCreated, error) {
	g, err := validateNewGroup(in)
	if err != nil {
		return GroupCreated{}, err
	}
	// Bad input is reported first; a well-formed group whose name is taken conflicts.
	if _, taken := s.names[g.Name]; taken {
		return GroupCreated{}, Errorf(EDUPLICATE, "group name %q is already taken", g.Name)
	}
	g.ID = s.nextGroupID
	return GroupCreated{Group: g}, nil
}

// validateNewGroup checks the fields of a new group (API.md 2.7) and returns it without an
// id.
func validateNewGroup(in GroupInput) (Group, error) {
	var errs fieldErrs
	g := Group{ModelRedirectRules: map[string]string{}, HeaderRules: []HeaderRule{}}

	var err error
	if in.Name == nil {
		errs.addf("name", "is required")
	} else if g.Name, err = ValidateGroupName(*in.Name); err != nil {
		errs.add(err)
	}
	g.ChannelType, err = ParseChannelType(deref(in.ChannelType))
	errs.add(err)
	g.Type, err = ParseGroupType(deref(in.GroupType))
	errs.add(err)
	if in.DisplayName != nil {
		g.DisplayName, err = ValidateText("display_name", *in.DisplayName, MaxDisplayNameLen)
		errs.add(err)
	}
	if in.Description != nil {
		g.Description, err = ValidateText("description", *in.Description, MaxDescriptionLen)
		errs.add(err)
	}
	if in.Sort != nil {
		g.Sort = *in.Sort
	}
	if g.Type == GroupAggregate {
		g.Upstreams, g.TestModel, g.ValidationEndpoint = []Upstream{}, "-", ""
	} else {
		if g.TestModel = strings.TrimSpace(deref(in.TestModel)); g.TestModel == "" {
			errs.addf("test_model", "test model cannot be empty")
		}
		if in.Upstreams == nil {
			errs.addf("upstreams", "at least one upstream is required")
		} else {
			g.Upstreams, err = ParseUpstreams(in.Upstreams)
			errs.add(err)
		}
		g.ValidationEndpoint, err = ValidateValidationEndpoint(deref(in.ValidationEndpoint))
		errs.add(err)
	}
	g.Config, err = ParseGroupConfig(in.Config)
	errs.add(err)
	g.HeaderRules, err = parseHeaderRules(in.HeaderRules)
	errs.add(err)
	g.ModelRedirectRules, err = parseRedirectRules(in.ModelRedirectRules)
	errs.add(err)
	if g.Type == GroupAggregate && len(g.ModelRedirectRules) > 0 {
		errs.addf("model_redirect_rules", "aggregate groups cannot have model redirect rules")
	}
	if in.ModelRedirectStrict != nil {
		g.ModelRedirectStrict = *in.ModelRedirectStrict
	}
	g.ParamOverrides, err = parseParamOverrides(in.ParamOverrides)
	errs.add(err)
	g.ProxyKeys = ValidateProxyKeys(deref(in.ProxyKeys))
	errs.add(checkBytes("proxy_keys", g.ProxyKeys, MaxProxyKeysBytes))
	errs.add(checkBytes("test_model", g.TestModel, MaxModelNameBytes))
	if err := Invalid(errs...); err != nil {
		return Group{}, err
	}
	return g, nil
}

// DecideUpdateGroup applies a partial update (API.md 2.9) to a group.
func DecideUpdateGroup(s *State, id uint64, in GroupInput) (GroupUpdated, error) {
	old, ok := s.groups[id]
	if !ok {
		return GroupUpdated{}, Errorf(ENOTFOUND, "group %d not found", id)
	}
	g := old.clone()
	var errs fieldErrs
	var changed []string
	var err error
	mark := func(field string) { changed = append(changed, field) }

	if in.Name != nil {
		name, err := ValidateGroupName(*in.Name)
		errs.add(err)
		if err == nil && name != g.Name {
			g.Name = name
			mark("name")
		}
	}
	if in.DisplayName != nil {
		g.DisplayName, err = ValidateText("display_name", *in.DisplayName, MaxDisplayNameLen)
		errs.add(err)
		mark("display_name")
	}
	if in.Description != nil {
		g.Description, err = ValidateText("description", *in.Description, MaxDescriptionLen)
		errs.add(err)
		mark("description")
	}
	parents := s.ParentsOf(id)
	if in.ChannelType != nil && g.Type == GroupStandard {
		ct, err := ParseChannelType(*in.ChannelType)
		errs.add(err)
		if err == nil && ct != g.ChannelType {
			if len(parents) > 0 {
				errs.addf("channel_type", "the group is a sub-group of %d aggregate group(s); its channel type cannot change", len(parents))
			}
			g.ChannelType = ct
			mark("channel_type")
		}
	}
	if in.Sort != nil {
		g.Sort = *in.Sort
		mark("sort")
	}
	if in.Upstreams != nil {
		g.Upstreams, err = ParseUpstreams(in.Upstreams)
		errs.add(err)
		mark("upstreams")
	}
	if in.TestModel != nil && *in.TestModel != "" && g.Type == GroupStandard { // an aggregate's is always "-"
		if tm := strings.TrimSpace(*in.TestModel); tm == "" {
			errs.addf("test_model", "test model cannot be empty")
		} else {
			errs.add(checkBytes("test_model", tm, MaxModelNameBytes))
			g.TestModel = tm
			mark("test_model")
		}
	}
	if in.ValidationEndpoint != nil {
		before := g.EffectiveValidationEndpoint()
		g.ValidationEndpoint, err = ValidateValidationEndpoint(*in.ValidationEndpoint)
		errs.add(err)
		if err == nil && len(parents) > 0 && g.EffectiveValidationEndpoint() != before {
			errs.addf("validation_endpoint", "the group is a sub-group of %d aggregate group(s); its validation endpoint cannot change", len(parents))
		}
		mark("validation_endpoint")
	}
	if !isNull(in.ParamOverrides) {
		g.ParamOverrides, err = parseParamOverrides(in.ParamOverrides)
		errs.add(err)
		mark("param_overrides")
	}
	if !isNull(in.ModelRedirectRules) {
		g.ModelRedirectRules, err = parseRedirectRules(in.ModelRedirectRules)
		errs.add(err)
		if g.Type == GroupAggregate && len(g.ModelRedirectRules) > 0 {
			errs.addf("model_redirect_rules", "aggregate groups cannot have model redirect rules")
		}
		mark("model_redirect_rules")
	}
	if in.ModelRedirectStrict != nil {
		g.ModelRedirectStrict = *in.ModelRedirectStrict
		mark("model_redirect_strict")
	}
	if !isNull(in.Config) {
		g.Config, err = ParseGroupConfig(in.Config)
		errs.add(err)
		mark("config")
	}
	if !isNull(in.HeaderRules) {
		g.HeaderRules, err = parseHeaderRules(in.HeaderRules)
		errs.add(err)
		mark("header_rules")
	}
	if in.ProxyKeys != nil {
		g.ProxyKeys = ValidateProxyKeys(*in.ProxyKeys)
		errs.add(checkBytes("proxy_keys", g.ProxyKeys, MaxProxyKeysBytes))
		mark("proxy_keys")
	}
	if err := Invalid(errs...); err != nil {
		return GroupUpdated{}, err
	}
	if g.Name != old.Name {
		if _, taken := s.names[g.Name]; taken {
			return GroupUpdated{}, Errorf(EDUPLICATE, "group name %q is already taken", g.Name)
		}
	}
	return GroupUpdated{Group: *g, Changed: changed}, nil
}

// DecideDeleteGroup removes a group with its keys and links.
func DecideDeleteGroup(s *State, id uint64) (GroupDeleted, error) {
	g, ok := s.groups[id]
	if !ok {
		return GroupDeleted{}, Errorf(ENOTFOUND, "group %d not found", id)
	}
	return GroupDeleted{GroupID: id, Name: g.Name}, nil
}

// DecideCopyGroup creates a copy of a group (API.md 2.12) without its aggregate links; the
// keys, if wanted, are added by the caller once the copy exists.
func DecideCopyGroup(s *State, id uint64) (GroupCreated, error) {
	src, ok := s.groups[id]
	if !ok {
		return GroupCreated{}, Errorf(ENOTFOUND, "group %d not found", id)
	}
	g := src.clone()
	g.ID, g.SubGroups, g.LastValidatedAt = s.nextGroupID, nil, time.Time{}
	g.Name = ""
	for i := 1; i <= 1000; i++ {
		name := src.Name + "_copy"
		if i > 1 {
			name = fmt.Sprintf("%s_copy_%d", src.Name, i)
		}
		if len(name) > 100 {
			break
		}
		if _, taken := s.names[name]; !taken {
			g.Name = name
			break
		}
	}
	if g.Name == "" {
		return GroupCreated{}, Errorf(EDUPLICATE, "no free name for a copy of %q", src.Name)
	}
	if g.DisplayName != "" {
		g.DisplayName += " Copy"
	}
	return GroupCreated{Group: *g}, nil
}

// DecideReorder sets the display order of groups.
func DecideReorder(s *State, items []GroupOrder) (GroupsReordered, error) {
	var errs fieldErrs
	for i, it := range items {
		if _, ok := s.groups[it.GroupID]; !ok {
			errs.addf(fmt.Sprintf("items[%d].id", i), "group %d not found", it.GroupID)
		}
	}
	if err := Invalid(errs...); err != nil {
		return GroupsReordered{}, err
	}
	return GroupsReordered{Items: append([]GroupOrder(nil), items...)}, nil
}

func (s *State) aggregate(id uint64) (*Group, error) {
	g, ok := s.groups[id]
	if !ok {
		return nil, Errorf(ENOTFOUND, "group %d not found", id)
	}
	if g.Type != GroupAggregate {
		return nil, Errorf(EINVALID, "group %q is not an aggregate group", g.Name)
	}
	return g, nil
}

// DecideAddSubGroups links standard groups to an aggregate (API.md 2.10).
func DecideAddSubGroups(s *State, id uint64, add []SubGroup) (SubGroupsChanged, error) {
	agg, err := s.aggregate(id)
	if err != nil {
		return SubGroupsChanged{}, err
	}
	var errs fieldErrs
	if len(add) == 0 {
		errs.addf("sub_groups", "at least one sub-group is required")
	}
	// endpoint is the effective validation endpoint every member must share, once one is
	// known (haveEndpoint): "" is a real endpoint (gemini's default), not "none yet".
	endpoint, haveEndpoint := "", false
	for _, sg := range agg.SubGroups {
		if m, ok := s.groups[sg.GroupID]; ok {
			endpoint, haveEndpoint = m.EffectiveValidationEndpoint(), true
		}
	}
	seen := map[uint64]bool{}
	for i, sg := range add {
		field := fmt.Sprintf("sub_groups[%d]", i)
		m, ok := s.groups[sg.GroupID]
		switch {
		case !ok || sg.GroupID == 0 || seen[sg.GroupID]:
			errs.addf(field+".group_id", "sub-group %d not found or listed twice", sg.GroupID)
			continue
		case m.Type == GroupAggregate:
			errs.addf(field+".group_id", "group %q is an aggregate and cannot be a sub-group", m.Name)
		case m.ChannelType != agg.ChannelType:
			errs.addf(field+".group_id", "group %q has channel type %s, the aggregate %s", m.Name, m.ChannelType, agg.ChannelType)
		case subGroupIndex(agg.SubGroups, sg.GroupID) >= 0:
			errs.addf(field+".group_id", "sub group %d already exists", sg.GroupID)
		}
		seen[sg.GroupID] = true
		errs.add(ValidateWeight(field+".weight", sg.Weight))
		if ep := m.EffectiveValidationEndpoint(); !haveEndpoint {
			endpoint, haveEndpoint = ep, true
		} else if ep != endpoint {
			errs.addf(field+".group_id", "all sub-groups must share one validation endpoint (%s, not %s)", endpoint, ep)
		}
	}
	if err := Invalid(errs...); err != nil {
		return SubGroupsChanged{}, err
	}
	return SubGroupsChanged{GroupID: id, SubGroups: append(append([]SubGroup(nil), agg.SubGroups...), add...)}, nil
}

// DecideSubGroupWeight changes the weight of one link.
func DecideSubGroupWeight(s *State, id, member uint64, weight int) (SubGroupsChanged, error) {
	agg, err := s.aggregate(id)
	if err != nil {
		return SubGroupsChanged{}, err
	}
	i := subGroupIndex(agg.SubGroups, member)
	if i < 0 {
		return SubGroupsChanged{}, Errorf(ENOTFOUND, "sub group %d not found", member)
	}
	if err := ValidateWeight("weight", weight); err != nil {
		return SubGroupsChanged{}, err
	}
	subs := append([]SubGroup(nil), agg.SubGroups...)
	subs[i].Weight = weight
	return SubGroupsChanged{GroupID: id, SubGroups: subs}, nil
}

// DecideRemoveSubGroup unlinks a member from an aggregate.
func DecideRemoveSubGroup(s *State, id, member uint64) (SubGroupsChanged, error) {
	agg, err := s.aggregate(id)
	if err != nil {
		return SubGroupsChanged{}, err
	}
	i := subGroupIndex(agg.SubGroups, member)
	if i < 0 {
		return SubGroupsChanged{}, Errorf(ENOTFOUND, "sub group %d not found", member)
	}
	subs := append(append([]SubGroup(nil), agg.SubGroups[:i]...), agg.SubGroups[i+1:]...)
	return SubGroupsChanged{GroupID: id, SubGroups: subs}, nil
}

// ParentsOf lists the aggregates a group belongs to, with the weight of each link, in id
// order.
func (s *State) ParentsOf(id uint64) []SubGroup {
	var out []SubGroup
	for _, g := range s.groups {
		if i := subGroupIndex(g.SubGroups, id); i >= 0 {
			out = append(out, SubGroup{GroupID: g.ID, Weight: g.SubGroups[i].Weight})
		}
	}
	slices.SortFunc(out, func(a, b SubGroup) int { return cmp.Compare(a.GroupID, b.GroupID) })
	return out
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
