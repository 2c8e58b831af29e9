// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// A small reader of XML property lists (the subset launchd uses: dict,
// array, string, integer, true, false) and of systemd unit files. Both
// refuse what they do not know instead of guessing, so a typo in a file is
// a test failure.

// parsePlist returns the top-level value: map[string]any, []any, string,
// int64 or bool.
func parsePlist(src []byte) (any, error) {
	d := xml.NewDecoder(bytes.NewReader(src))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("no <plist> element: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "plist" {
				return nil, fmt.Errorf("root element is <%s>, want <plist>", se.Name.Local)
			}
			v, err := plistValue(d)
			if err != nil {
				return nil, err
			}
			return v, nil
		}
	}
}

// nextStart skips character data and comments up to the next element; it
// returns ok=false at an end element.
func nextStart(d *xml.Decoder) (xml.StartElement, bool, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return xml.StartElement{}, false, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, true, nil
		case xml.EndElement:
			return xml.StartElement{}, false, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return xml.StartElement{}, false, fmt.Errorf("stray text %q", t)
			}
		}
	}
}

func plistValue(d *xml.Decoder) (any, error) {
	se, ok, err := nextStart(d)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("missing value")
	}
	return plistElement(d, se)
}

func plistElement(d *xml.Decoder, se xml.StartElement) (any, error) {
	switch se.Name.Local {
	case "string", "key":
		var s string
		if err := d.DecodeElement(&s, &se); err != nil {
			return nil, err
		}
		return s, nil
	case "integer":
		var s string
		if err := d.DecodeElement(&s, &se); err != nil {
			return nil, err
		}
		return strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	case "true", "false":
		if err := d.Skip(); err != nil {
			return nil, err
		}
		return se.Name.Local == "true", nil
	case "array":
		out := []any{}
		for {
			el, ok, err := nextStart(d)
			if err != nil {
				return nil, err
			}
			if !ok {
				return out, nil
			}
			v, err := plistElement(d, el)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
	case "dict":
		out := map[string]any{}
		for {
			el, ok, err := nextStart(d)
			if err != nil {
				return nil, err
			}
			if !ok {
				return out, nil
			}
			if el.Name.Local != "key" {
				return nil, fmt.Errorf("dict: <%s> where a <key> belongs", el.Name.Local)
			}
			var key string
			if err := d.DecodeElement(&key, &el); err != nil {
				return nil, err
			}
			if _, dup := out[key]; dup {
				return nil, fmt.Errorf("dict: key %q twice", key)
			}
			v, err := plistValue(d)
			if err != nil {
				return nil, fmt.Errorf("dict key %q: %w", key, err)
			}
			out[key] = v
		}
	default:
		return nil, fmt.Errorf("unsupported plist element <%s>", se.Name.Local)
	}
}

// unit is a parsed systemd unit: section -> key -> values in file order
// (keys such as SystemCallFilter may repeat).
type unit map[string]map[string][]string

func (u unit) get(section, key string) []string { return u[section][key] }

// last is the effective value of a single-valued key.
func (u unit) last(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// parseUnit reads systemd's INI dialect: [Section] headers, Key=Value
// lines, # and ; comments, and backslash line continuations.
func parseUnit(r io.Reader) (unit, error) {
	u := unit{}
	section := ""
	sc := bufio.NewScanner(r)
	lineNo := 0
	var pending string
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if pending != "" {
			line = pending + " " + line
			pending = ""
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			pending = strings.TrimSuffix(line, `\`)
			continue
		}
		if line[0] == '[' {
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("line %d: bad section header %q", lineNo, line)
			}
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			return nil, fmt.Errorf("line %d: %q is not Key=Value inside a section", lineNo, line)
		}
		k = strings.TrimSpace(k)
		u[section][k] = append(u[section][k], strings.TrimSpace(v))
	}
	if pending != "" {
		return nil, errors.New("file ends inside a line continuation")
	}
	return u, sc.Err()
}
