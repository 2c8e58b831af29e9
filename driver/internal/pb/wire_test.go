// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package pb_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/shoenig/test/must"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	_ "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/base"
	_ "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/device"
	_ "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
	_ "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/hclspec"
	_ "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/structs"
)

// nomadPackages are the proto packages of Nomad's plugin protocol.
var nomadPackages = []protoreflect.FullName{
	"hashicorp.nomad.plugins.base.proto",
	"hashicorp.nomad.plugins.device",
	"hashicorp.nomad.plugins.drivers.proto",
	"hashicorp.nomad.plugins.shared.hclspec",
	"hashicorp.nomad.plugins.shared.structs",
}

// TestWire_Descriptors_matchReference renders every service, message and
// enum our generated code registers in Nomad's packages and compares the
// result with wireTable, block by block, in both directions: a missing,
// extra or different method, field, reserved number or enum value fails.
func TestWire_Descriptors_matchReference(t *testing.T) {
	want := parseBlocks(t, wireTable)
	got := renderRegistered(t)

	for _, key := range sortedKeys(want) {
		g, ok := got[key]
		if !ok {
			t.Errorf("%s: declared in the reference but not generated", key)
			continue
		}
		if !slices.Equal(g, want[key]) {
			t.Errorf("%s differs from the reference:\n  got:  %s\n  want: %s",
				key, strings.Join(g, "\n        "), strings.Join(want[key], "\n        "))
		}
	}
	for _, key := range sortedKeys(got) {
		if _, ok := want[key]; !ok {
			t.Errorf("%s: generated but not in the reference", key)
		}
	}
	must.MapLen(t, len(want), got)
}

// TestWire_RecoverableError_typeURL checks the one full name that travels
// on the wire (as a status detail type URL).
func TestWire_RecoverableError_typeURL(t *testing.T) {
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(
		"type.googleapis.com/hashicorp.nomad.plugins.shared.structs.RecoverableError")
	must.NoError(t, err)
	must.Eq(t, "recoverable", string(mt.Descriptor().Fields().ByNumber(1).Name()))
}

// renderRegistered renders the registered descriptors of nomadPackages into
// blocks keyed by their header line.
func renderRegistered(t *testing.T) map[string][]string {
	t.Helper()
	blocks := map[string][]string{}
	for _, pkg := range nomadPackages {
		n := 0
		protoregistry.GlobalFiles.RangeFilesByPackage(pkg, func(fd protoreflect.FileDescriptor) bool {
			n++
			must.Eq(t, protoreflect.Proto3, fd.Syntax(), must.Sprintf("file %s", fd.Path()))
			renderServices(blocks, fd.Services())
			renderMessages(blocks, fd.Messages())
			renderEnums(blocks, fd.Enums())
			return true
		})
		must.Positive(t, n, must.Sprintf("no file registered for package %s", pkg))
	}
	return blocks
}

func renderServices(blocks map[string][]string, sds protoreflect.ServiceDescriptors) {
	for i := range sds.Len() {
		sd := sds.Get(i)
		var lines []string
		for j := range sd.Methods().Len() {
			m := sd.Methods().Get(j)
			lines = append(lines, fmt.Sprintf("rpc /%s/%s %s %s %s",
				sd.FullName(), m.Name(), m.Input().FullName(), m.Output().FullName(), streamKind(m)))
		}
		slices.Sort(lines)
		blocks["service "+string(sd.FullName())] = lines
	}
}

func streamKind(m protoreflect.MethodDescriptor) string {
	switch {
	case m.IsStreamingClient() && m.IsStreamingServer():
		return "bidirectional"
	case m.IsStreamingServer():
		return "server-streaming"
	case m.IsStreamingClient():
		return "client-streaming"
	default:
		return "unary"
	}
}

func renderMessages(blocks map[string][]string, mds protoreflect.MessageDescriptors) {
	for i := range mds.Len() {
		md := mds.Get(i)
		if md.IsMapEntry() {
			continue // part of the map field's rendering
		}
		var lines []string
		for j := range md.Fields().Len() {
			lines = append(lines, renderField(md.Fields().Get(j)))
		}
		for j := range md.ReservedRanges().Len() {
			r := md.ReservedRanges().Get(j)
			for n := r[0]; n < r[1]; n++ {
				lines = append(lines, fmt.Sprintf("reserved %d", n))
			}
		}
		for j := range md.ReservedNames().Len() {
			lines = append(lines, fmt.Sprintf("reserved %q", md.ReservedNames().Get(j)))
		}
		slices.Sort(lines)
		blocks["message "+string(md.FullName())] = lines
		renderMessages(blocks, md.Messages())
		renderEnums(blocks, md.Enums())
	}
}

func renderField(fd protoreflect.FieldDescriptor) string {
	label := "-"
	typ := fieldType(fd)
	switch {
	case fd.IsMap():
		label = "map"
		typ = fmt.Sprintf("map<%s,%s>", fieldType(fd.MapKey()), fieldType(fd.MapValue()))
	case fd.IsList():
		label = "repeated"
	case fd.ContainingOneof() != nil && !fd.ContainingOneof().IsSynthetic():
		label = "oneof:" + string(fd.ContainingOneof().Name())
	case fd.Message() == nil && fd.HasPresence():
		label = "optional" // proto3 scalars in Nomad's files have implicit presence
	}
	return fmt.Sprintf("%d %s %s %s", fd.Number(), fd.Name(), typ, label)
}

func fieldType(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return string(fd.Message().FullName())
	case protoreflect.EnumKind:
		return string(fd.Enum().FullName())
	default:
		return fd.Kind().String()
	}
}

func renderEnums(blocks map[string][]string, eds protoreflect.EnumDescriptors) {
	for i := range eds.Len() {
		ed := eds.Get(i)
		header := "enum " + string(ed.FullName())
		if opts, ok := ed.Options().(*descriptorpb.EnumOptions); ok && opts.GetAllowAlias() {
			header += " allow_alias"
		}
		var lines []string
		for j := range ed.Values().Len() {
			v := ed.Values().Get(j)
			lines = append(lines, fmt.Sprintf("%s = %d", v.Name(), v.Number()))
		}
		slices.Sort(lines)
		blocks[header] = lines
	}
}

// parseBlocks splits wireTable into blocks: a header line at column 0,
// followed by indented member lines.
func parseBlocks(t *testing.T, table string) map[string][]string {
	t.Helper()
	blocks := map[string][]string{}
	header := ""
	for i, line := range strings.Split(table, "\n") {
		switch {
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#"):
		case !strings.HasPrefix(line, " "):
			header = line
			_, dup := blocks[header]
			must.False(t, dup, must.Sprintf("line %d: duplicate block %q", i+1, header))
			blocks[header] = nil
		default:
			must.NotEq(t, "", header, must.Sprintf("line %d: member before any header", i+1))
			blocks[header] = append(blocks[header], strings.TrimSpace(line))
		}
	}
	for k := range blocks {
		slices.Sort(blocks[k])
	}
	return blocks
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
