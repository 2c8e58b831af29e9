// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package config

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/shoenig/test/must"
)

// TestPackage_importsNoBackend: only the service wiring knows the backend
// packages (they import this one for DurationField); config imports
// nothing of this module, so no backend either, directly or not.
func TestPackage_importsNoBackend(t *testing.T) {
	entries, err := os.ReadDir(".")
	must.NoError(t, err)
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, parser.ImportsOnly)
		must.NoError(t, err)
		for _, imp := range f.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			must.NoError(t, err)
			must.False(t, strings.HasPrefix(path, "github.com/tartnomad/nomad-driver-tart/"), must.Sprintf("%s imports %s", e.Name(), path))
		}
	}
}
