//go:build !race

package gptload_test

// generatedKeys is the size of TestImportGenerated (see race_test.go).
const generatedKeys = 100_000
