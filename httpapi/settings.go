package httpapi

import (
	"encoding/json"
	"net/http"

	"gpt-load/domain"
	"gpt-load/events"
)

type settingInfo struct {
	Key          string `json:"key"`
	Name         string `json:"name"`
	Value        any    `json:"value"`
	Type         string `json:"type"`
	DefaultValue string `json:"default_value"`
	Description  string `json:"description"`
	Category     string `json:"category"`
	MinValue     *int   `json:"min_value,omitempty"`
	MaxValue     *int   `json:"max_value,omitempty"`
	Required     bool   `json:"required"`
}

type settingCategory struct {
	CategoryName string        `json:"category_name"`
	Settings     []settingInfo `json:"settings"`
}

var categoryNames = map[string]msgID{
	domain.SettingCategoryBasic:   msgCategoryBasic,
	domain.SettingCategoryRequest: msgCategoryRequest,
	domain.SettingCategoryKey:     msgCategoryKey,
}

// getSettings is GET /api/settings (API.md 4.2): the settings by category, in table
// order, with localized names.
func (a *admin) getSettings(w http.ResponseWriter, r *http.Request) {
	l := langOf(r)
	values := a.state.View().Settings.Values()
	var out []settingCategory
	for _, def := range domain.SettingDefs() {
		cat := trLang(l, categoryNames[def.Category])
		if len(out) == 0 || out[len(out)-1].CategoryName != cat {
			out = append(out, settingCategory{CategoryName: cat})
		}
		c := &out[len(out)-1]
		c.Settings = append(c.Settings, settingInfo{
			Key: def.Key, Name: settingName(l, def.Key, def.Name), Value: values[def.Key],
			Type: string(def.Type), DefaultValue: def.Default,
			Description: settingDescription(l, def.Key, def.Description),
			Category:    cat, MinValue: def.Min, MaxValue: def.Max, Required: def.Required,
		})
	}
	ok(w, r, out)
}

// putSettings is PUT /api/settings: any subset of the settings, all or nothing. Every bad
// entry is named in one 400 VALIDATION_ERROR (ours; gpt-load answered 500). The change is
// in force on this node when the answer leaves, on the others as soon as they read it.
func (a *admin) putSettings(w http.ResponseWriter, r *http.Request) {
	var changes map[string]json.RawMessage
	if err := decodeJSON(w, r, &changes); err != nil {
		fail(w, r, err)
		return
	}
	if changes == nil {
		fail(w, r, &apiError{status: http.StatusBadRequest, code: codeInvalidJSON, text: "the request body must be an object"})
		return
	}
	err := a.cmd.UpdateSettings(r.Context(), events.ActorAdmin, changes)
	if domain.ErrorCode(err) == domain.EINVALID {
		fields := domain.ErrorFields(err)
		fail(w, r, &apiError{status: http.StatusBadRequest, code: codeSettings, msg: msgInvalidSettings,
			args: []any{err.Error()}, fields: fields})
		return
	}
	if err != nil {
		fail(w, r, err)
		return
	}
	okMsg(w, r, nil, msgSettingsUpdated)
}
