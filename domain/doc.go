// Package domain holds the model of the key-pool proxy: system settings, groups, keys and
// their health, the commands that change them and the facts (event payloads) those commands
// produce, with the pure functions that decide and fold them.
//
// It imports nothing but the standard library; every other package depends on it.
package domain
