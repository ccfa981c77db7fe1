// Package events is the event log of the service on JetStream: the envelope and the
// registry of stable event names and schema versions, the codec (with encryption of key
// values), append with optimistic concurrency, replay and follow, snapshots, and the
// command services that decide facts against the projected state and append them.
package events

import (
	"encoding/json"
	"fmt"
	"reflect"

	"gpt-load/domain"
)

// kind is one registered event type. Names and schema versions are stable: they are in the
// log forever. Renaming one is a migration, never a refactoring.
type kind struct {
	name   string
	schema int
	typ    reflect.Type
	decode func([]byte) (domain.Fact, error)
}

func reg[T domain.Fact](name string, schema int) kind {
	return kind{name: name, schema: schema, typ: reflect.TypeFor[T](), decode: func(b []byte) (domain.Fact, error) {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, err
		}
		return v, nil
	}}
}

// kinds lists every event type the service writes or reads.
func kinds() []kind {
	return []kind{
		reg[domain.SettingsChanged]("settings.changed", 1),
		reg[domain.GroupCreated]("group.created", 1),
		reg[domain.GroupUpdated]("group.updated", 1),
		reg[domain.GroupDeleted]("group.deleted", 1),
		reg[domain.GroupsReordered]("groups.reordered", 1),
		reg[domain.SubGroupsChanged]("group.subgroups_changed", 1),
		reg[domain.GroupValidated]("group.validated", 1),
		reg[domain.KeysAdded]("keys.added", 1),
		reg[domain.KeysRemoved]("keys.removed", 1),
		reg[domain.KeysCleared]("keys.cleared", 1),
		reg[domain.KeysRestored]("keys.restored", 1),
		reg[domain.KeyNoteChanged]("key.note_changed", 1),
		reg[domain.KeysDisabled]("keys.disabled", 1),
		reg[domain.KeysEnabled]("keys.enabled", 1),
		reg[domain.KeyFailed]("key.failed", 1),
		reg[domain.KeySucceeded]("key.succeeded", 1),
		reg[domain.KeyValidated]("key.validated", 1),
		reg[domain.KeysExported]("keys.exported", 1),
		reg[domain.GroupImported]("group.imported", 1),
		reg[domain.KeysImported]("keys.imported", 1),
		reg[domain.ProxyKeyCreated]("proxykey.created", 1),
		reg[domain.ProxyKeyUpdated]("proxykey.updated", 1),
		reg[domain.ProxyKeyRotated]("proxykey.rotated", 1),
		reg[domain.ProxyKeyDeleted]("proxykey.deleted", 1),
	}
}

type registry struct {
	byName map[string]*kind
	byType map[reflect.Type]*kind
}

func newRegistry() *registry {
	r := &registry{byName: map[string]*kind{}, byType: map[reflect.Type]*kind{}}
	for _, k := range kinds() {
		k := k
		r.byName[k.name] = &k
		r.byType[k.typ] = &k
	}
	return r
}

func (r *registry) of(f domain.Fact) (*kind, error) {
	k, ok := r.byType[reflect.TypeOf(f)]
	if !ok {
		return nil, fmt.Errorf("events: %T is not a registered event", f)
	}
	return k, nil
}

// Names lists the registered event names, for documentation and the audit filter.
func Names() []string {
	ks := kinds()
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.name
	}
	return out
}
