//go:build race

package gptload_test

// generatedKeys is the size of TestImportGenerated. The race detector makes each key
// several times dearer; it is there to watch the import's goroutines, which a tenth of
// the keys exercise as well.
const generatedKeys = 10_000
