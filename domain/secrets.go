package domain

// Secret fields of facts: values that grant access to something, and so must not rest in
// clear wherever the log is stored. They are
//
//   - upstream key values (KeysAdded, KeysImported);
//   - proxy keys: the global ones (SettingsChanged, seeded from AUTH_KEY, the admin key)
//     and each group's (GroupCreated, GroupUpdated, GroupImported);
//   - outbound proxy URLs, which may carry user:password (SettingsChanged, and a group's
//     config override);
//   - header rule values, which often carry tokens ("Authorization: Bearer ...");
//   - upstream URLs, which may carry user:password or a key in the query.
//
// Names, ids, hashes, models and settings that are not listed stay readable.

// MapSecrets returns a copy of f with every non-empty secret field replaced by fn of it,
// and whether any field was replaced. Empty fields stay empty. f itself, and anything it
// shares with other values, is never modified. A fact without secret fields is returned
// as it is, with false.
func MapSecrets(f Fact, fn func(string) (string, error)) (Fact, bool, error) {
	m := secretMapper{fn: fn}
	switch f := f.(type) {
	case KeysAdded:
		keys := make([]NewKey, len(f.Keys))
		for i, k := range f.Keys {
			keys[i] = NewKey{Value: m.do(k.Value), Hash: k.Hash}
		}
		f.Keys = keys
		return f, m.changed, m.err
	case SettingsChanged:
		f.Settings.ProxyKeys = m.do(f.Settings.ProxyKeys)
		f.Settings.ProxyURL = m.do(f.Settings.ProxyURL)
		f.Changed = append([]string(nil), f.Changed...)
		return f, m.changed, m.err
	case KeysImported:
		keys := make([]ImportedKey, len(f.Keys))
		for i, k := range f.Keys {
			k.Value = m.do(k.Value)
			keys[i] = k
		}
		f.Keys = keys
		return f, m.changed, m.err
	case GroupCreated:
		f.Group = m.group(f.Group)
		return f, m.changed, m.err
	case GroupImported:
		f.Group = m.group(f.Group)
		return f, m.changed, m.err
	case GroupUpdated:
		f.Group = m.group(f.Group)
		f.Changed = append([]string(nil), f.Changed...)
		return f, m.changed, m.err
	}
	return f, false, nil
}

type secretMapper struct {
	fn      func(string) (string, error)
	changed bool
	err     error
}

func (m *secretMapper) do(v string) string {
	if v == "" || m.err != nil {
		return v
	}
	out, err := m.fn(v)
	if err != nil {
		m.err = err
		return v
	}
	m.changed = true
	return out
}

// group maps the secret fields of a copy of g.
func (m *secretMapper) group(g Group) Group {
	c := g.clone()
	c.ProxyKeys = m.do(c.ProxyKeys)
	for i := range c.Upstreams {
		c.Upstreams[i].URL = m.do(c.Upstreams[i].URL)
	}
	for i := range c.HeaderRules {
		c.HeaderRules[i].Value = m.do(c.HeaderRules[i].Value)
	}
	if c.Config.ProxyURL != nil {
		c.Config.ProxyURL = new(m.do(*c.Config.ProxyURL))
	}
	return *c
}
