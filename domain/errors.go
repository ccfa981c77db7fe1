package domain

import (
	"errors"
	"fmt"
	"strings"
)

// Code classifies an error for the edges: httpapi turns a Code into an HTTP status once,
// in one place. Codes are stable strings.
type Code string

const (
	EINVALID      Code = "invalid"      // the input breaks a rule; Fields names the culprits
	ENOTFOUND     Code = "not_found"    // the addressed group, key or link does not exist
	EDUPLICATE    Code = "duplicate"    // a unique value (a group name) is taken
	ECONFLICT     Code = "conflict"     // the state moved on while deciding; try again
	EUNAUTHORIZED Code = "unauthorized" // missing or wrong credential
	EINTERNAL     Code = "internal"     // a bug or an infrastructure failure
)

// FieldError names one offending input field and says what is wrong with it.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is the error type of the domain. Message is written for the user.
type Error struct {
	Code    Code
	Message string
	Fields  []FieldError
}

func (e *Error) Error() string {
	if len(e.Fields) == 0 || e.Message != "" {
		return e.Message
	}
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return strings.Join(parts, "; ")
}

// Errorf builds an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid builds an EINVALID error from field errors; it returns nil when there are none,
// so validators can collect problems and return Invalid(problems...) at the end.
func Invalid(fields ...FieldError) error {
	if len(fields) == 0 {
		return nil
	}
	return &Error{Code: EINVALID, Fields: fields}
}

// ErrorCode returns the Code of err, EINTERNAL for errors that carry none, "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorFields returns the field errors carried by err, if any.
func ErrorFields(err error) []FieldError {
	var e *Error
	if errors.As(err, &e) {
		return e.Fields
	}
	return nil
}
