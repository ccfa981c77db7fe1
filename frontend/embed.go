// Package frontend holds the web dashboard: a Vue 3 single-page application whose build
// (frontend/dist) is embedded in the binary. A checkout where the dashboard was never
// built embeds only dist/.keep, so the Go build never needs Node; httpapi then answers
// the dashboard's routes with a page that says how to build it.
package frontend

import (
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// Dist returns the files of the built dashboard (index.html, assets/...). It holds no
// index.html when the dashboard was not built.
func Dist() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // "dist" is a valid path: cannot happen
	}
	return sub
}
