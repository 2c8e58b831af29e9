// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package deploy_test

import (
	"fmt"
	"strings"
)

// A minimal PromQL reader: enough to list the series selectors (metric
// name and label matchers) and the grouping labels (by, without, on,
// ignoring) of the dashboard's and the rules' expressions. It does not
// evaluate anything; an expression it cannot tokenize is an error.

type matcher struct{ label, op, value string }

type selector struct {
	metric   string
	matchers []matcher
}

type query struct {
	selectors []selector
	grouping  []string
}

var promKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
}

// promAggregators may take their grouping before the parenthesis
// (sum by (x) (...)), so they are not always followed by "(".
var promAggregators = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdent(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func parsePromQL(expr string) (query, error) {
	var q query
	i := 0
	skipSpace := func() {
		for i < len(expr) && (expr[i] == ' ' || expr[i] == '\t' || expr[i] == '\n') {
			i++
		}
	}
	ident := func() string {
		start := i
		for i < len(expr) && isIdent(expr[i]) {
			i++
		}
		return expr[start:i]
	}
	str := func() (string, error) {
		quote := expr[i]
		i++
		var b strings.Builder
		for i < len(expr) && expr[i] != quote {
			if expr[i] == '\\' && i+1 < len(expr) {
				i++
			}
			b.WriteByte(expr[i])
			i++
		}
		if i >= len(expr) {
			return "", fmt.Errorf("unterminated string in %q", expr)
		}
		i++
		return b.String(), nil
	}
	for i < len(expr) {
		skipSpace()
		if i >= len(expr) {
			break
		}
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			if _, err := str(); err != nil {
				return q, err
			}
		case c == '[':
			end := strings.IndexByte(expr[i:], ']')
			if end < 0 {
				return q, fmt.Errorf("unterminated [ in %q", expr)
			}
			i += end + 1
		case c == '$':
			i++
			ident()
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		case c == '{':
			// a selector without a metric name: not used here
			return q, fmt.Errorf("selector without a metric name in %q", expr)
		case isIdentStart(c):
			name := ident()
			skipSpace()
			switch {
			case promKeywords[name]:
				if (name == "by" || name == "without" || name == "on" || name == "ignoring") && i < len(expr) && expr[i] == '(' {
					end := strings.IndexByte(expr[i:], ')')
					if end < 0 {
						return q, fmt.Errorf("unterminated grouping in %q", expr)
					}
					for _, l := range strings.Split(expr[i+1:i+end], ",") {
						if l = strings.TrimSpace(l); l != "" {
							q.grouping = append(q.grouping, l)
						}
					}
					i += end + 1
				}
			case promAggregators[name] || i < len(expr) && expr[i] == '(':
				// a function or an aggregation
			default:
				sel := selector{metric: name}
				if i < len(expr) && expr[i] == '{' {
					i++
					for {
						skipSpace()
						if i < len(expr) && expr[i] == '}' {
							i++
							break
						}
						l := ident()
						skipSpace()
						op := ""
						for i < len(expr) && strings.IndexByte("=!~", expr[i]) >= 0 {
							op += string(expr[i])
							i++
						}
						skipSpace()
						if l == "" || op == "" || i >= len(expr) || (expr[i] != '"' && expr[i] != '\'') {
							return q, fmt.Errorf("bad label matcher in %q", expr)
						}
						v, err := str()
						if err != nil {
							return q, err
						}
						sel.matchers = append(sel.matchers, matcher{l, op, v})
						skipSpace()
						if i < len(expr) && expr[i] == ',' {
							i++
						}
					}
				}
				q.selectors = append(q.selectors, sel)
			}
		default:
			i++ // operators, parentheses, commas
		}
	}
	return q, nil
}
