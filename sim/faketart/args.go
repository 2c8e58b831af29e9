// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"strconv"
	"strings"
)

// option describes one command-line option in swift-argument-parser terms.
type option struct {
	long      string // without dashes, e.g. "cpu"
	short     byte   // 0 when none
	valueName string // "" for a boolean flag
}

// commandSpec is what the parser needs to know about one subcommand.
type commandSpec struct {
	name        string
	options     []option
	positionals []string // names of the required positionals, e.g. "<name>"
	// optionalPositionals are accepted after the required ones.
	optionalPositionals string // e.g. "<name> ..." for delete's extra names
	// passthrough: everything after the last required positional is taken
	// verbatim (tart exec).
	passthrough bool
	usage       string
}

// parsedArgs holds what parse found.
type parsedArgs struct {
	values map[string][]string
	flags  map[string]bool
	pos    []string
	rest   []string // passthrough arguments
}

func (p *parsedArgs) has(long string) bool { return p.flags[long] || len(p.values[long]) > 0 }

func (p *parsedArgs) value(long string) (string, bool) {
	v := p.values[long]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

func (s *commandSpec) find(long string) (option, bool) {
	for _, o := range s.options {
		if o.long == long {
			return o, true
		}
	}
	return option{}, false
}

func (s *commandSpec) findShort(c byte) (option, bool) {
	for _, o := range s.options {
		if o.short != 0 && o.short == c {
			return o, true
		}
	}
	return option{}, false
}

func optLabel(o option) string {
	if o.valueName == "" {
		return "--" + o.long
	}
	return "--" + o.long + " <" + o.valueName + ">"
}

// parse parses args (after the subcommand name) the way
// swift-argument-parser does for our purposes: --name value, --name=value,
// -x value, combined short boolean flags (-it), and "--" ending options.
func (s *commandSpec) parse(args []string) (*parsedArgs, error) {
	p := &parsedArgs{values: map[string][]string{}, flags: map[string]bool{}}
	optionsDone := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if s.passthrough && len(p.pos) == len(s.positionals) {
			p.rest = append(p.rest, args[i:]...)
			break
		}
		switch {
		case optionsDone || a == "-" || !strings.HasPrefix(a, "-"):
			p.pos = append(p.pos, a)
		case a == "--":
			if s.passthrough {
				// tart exec has no "--": it would become part of the argv.
				p.pos = append(p.pos, a)
				continue
			}
			optionsDone = true
		case a == "--help" || a == "-h":
			return nil, errHelp
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			o, ok := s.find(name)
			if !ok {
				return nil, usageErr(s.name, "Unknown option '--%s'", name)
			}
			if o.valueName == "" {
				if hasVal {
					return nil, usageErr(s.name, "Unknown option '%s'", a)
				}
				p.flags[o.long] = true
				continue
			}
			if !hasVal {
				if i+1 >= len(args) {
					return nil, usageErr(s.name, "Missing value for '%s'", optLabel(o))
				}
				i++
				val = args[i]
			}
			p.values[o.long] = append(p.values[o.long], val)
		default: // short option(s)
			letters := a[1:]
			for j := 0; j < len(letters); j++ {
				o, ok := s.findShort(letters[j])
				if !ok {
					return nil, usageErr(s.name, "Unknown option '-%c'", letters[j])
				}
				if o.valueName == "" {
					p.flags[o.long] = true
					continue
				}
				val := letters[j+1:]
				if val == "" {
					if i+1 >= len(args) {
						return nil, usageErr(s.name, "Missing value for '-%c <%s>'", o.short, o.valueName)
					}
					i++
					val = args[i]
				}
				p.values[o.long] = append(p.values[o.long], val)
				break
			}
		}
	}
	if len(p.pos) < len(s.positionals) {
		return nil, usageErr(s.name, "Missing expected argument '%s'", s.positionals[len(p.pos)])
	}
	if s.passthrough && len(p.rest) == 0 {
		return nil, usageErr(s.name, "Missing expected argument '<command> ...'")
	}
	if len(p.pos) > len(s.positionals) && s.optionalPositionals == "" {
		return nil, usageErr(s.name, "Unexpected argument '%s'", p.pos[len(s.positionals)])
	}
	return p, nil
}

// intValue reads an integer option within [min, max]; a bad value is a
// validation error naming the option, as swift-argument-parser reports it.
func (s *commandSpec) intValue(p *parsedArgs, long string, def, minV, maxV int64) (int64, error) {
	v, ok := p.value(long)
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < minV || n > maxV {
		o, _ := s.find(long)
		return 0, usageErr(s.name, "The value '%s' is invalid for '%s'", v, optLabel(o))
	}
	return n, nil
}

// errHelp asks Main to print the command's help and exit 0.
var errHelp = &cliError{code: exitOK, shape: shapeBare, msg: "help"}

const maxUInt16 = 65535

var commandSpecs = map[string]*commandSpec{
	"clone": {
		name: "clone",
		options: []option{
			{long: "insecure"}, {long: "concurrency", valueName: "concurrency"},
			{long: "prune-limit", valueName: "n"}, {long: "deduplicate"},
		},
		positionals: []string{"<source-name>", "<new-name>"},
		usage:       "tart clone <source-name> <new-name> [--insecure] [--concurrency <concurrency>] [--prune-limit <n>]",
	},
	"pull": {
		name:        "pull",
		options:     []option{{long: "insecure"}, {long: "concurrency", valueName: "concurrency"}, {long: "deduplicate"}},
		positionals: []string{"<remote-name>"},
		usage:       "tart pull <remote-name> [--insecure] [--concurrency <concurrency>]",
	},
	"set": {
		name: "set",
		options: []option{
			{long: "cpu", valueName: "cpu"}, {long: "memory", valueName: "memory"},
			{long: "display", valueName: "display"}, {long: "display-refit"}, {long: "no-display-refit"},
			{long: "random-mac"}, {long: "random-serial"}, {long: "disk", valueName: "disk"},
			{long: "disk-size", valueName: "disk-size"},
		},
		positionals: []string{"<name>"},
		usage:       "tart set <name> [--cpu <cpu>] [--memory <memory>] [--display <display>] [--display-refit] [--no-display-refit] [--random-mac] [--random-serial] [--disk <disk>] [--disk-size <disk-size>]",
	},
	"get": {
		name:        "get",
		options:     []option{{long: "format", valueName: "format"}},
		positionals: []string{"<name>"},
		usage:       "tart get <name> [--format <format>]",
	},
	"list": {
		name:    "list",
		options: []option{{long: "source", valueName: "source"}, {long: "format", valueName: "format"}, {long: "quiet", short: 'q'}},
		usage:   "tart list [--source <source>] [--format <format>] [--quiet]",
	},
	"run": {
		name: "run",
		options: []option{
			{long: "no-graphics"}, {long: "graphics"}, {long: "dir", valueName: "dir"}, {long: "disk", valueName: "disk"},
			{long: "root-disk-opts", valueName: "root-disk-opts"}, {long: "net-bridged", valueName: "interface name"},
			{long: "net-softnet"}, {long: "net-softnet-allow", valueName: "comma-separated CIDRs"},
			{long: "net-softnet-block", valueName: "comma-separated CIDRs"},
			{long: "net-softnet-expose", valueName: "comma-separated port specifications"},
			{long: "net-host"}, {long: "suspendable"}, {long: "nested"}, {long: "vnc"}, {long: "vnc-experimental"},
			{long: "serial"}, {long: "serial-path", valueName: "serial-path"}, {long: "recovery"},
			{long: "rosetta", valueName: "tag"}, {long: "no-audio"}, {long: "no-clipboard"}, {long: "no-trackpad"},
			{long: "no-pointer"}, {long: "no-keyboard"}, {long: "capture-system-keys"}, {long: "sync", valueName: "sync"},
		},
		positionals: []string{"<name>"},
		usage:       "tart run <name> [--no-graphics] [--serial] [--serial-path <serial-path>] [--no-audio] [--no-clipboard] [--recovery] [--vnc] [--vnc-experimental] [--disk <disk> ...] [--rosetta <tag>] [--dir <dir> ...] [--nested] [--net-bridged <interface name> ...] [--net-softnet] [--net-softnet-allow <comma-separated CIDRs>] [--net-softnet-block <comma-separated CIDRs>] [--net-softnet-expose <comma-separated port specifications>] [--net-host] [--root-disk-opts <root-disk-opts>] [--suspendable] [--capture-system-keys] [--no-trackpad] [--no-pointer] [--no-keyboard]",
	},
	"ip": {
		name:        "ip",
		options:     []option{{long: "wait", valueName: "wait"}, {long: "resolver", valueName: "resolver"}},
		positionals: []string{"<name>"},
		usage:       "tart ip <name> [--wait <wait>] [--resolver <resolver>]",
	},
	"exec": {
		name:        "exec",
		options:     []option{{long: "interactive", short: 'i'}, {long: "tty", short: 't'}},
		positionals: []string{"<name>"},
		passthrough: true,
		usage:       "tart exec [-i] [-t] <name> <command> ...",
	},
	"stop": {
		name:        "stop",
		options:     []option{{long: "timeout", short: 't', valueName: "timeout"}},
		positionals: []string{"<name>"},
		usage:       "tart stop <name> [--timeout <timeout>]",
	},
	"suspend": {
		name:        "suspend",
		positionals: []string{"<name>"},
		usage:       "tart suspend <name>",
	},
	"delete": {
		name:                "delete",
		positionals:         []string{"<name> ..."},
		optionalPositionals: "<name> ...",
		usage:               "tart delete <name> ...",
	},
	"prune": {
		name: "prune",
		options: []option{
			{long: "entries", valueName: "entries"}, {long: "older-than", valueName: "n"},
			{long: "space-budget", valueName: "n"}, {long: "cache-budget", valueName: "n"}, {long: "gc"},
		},
		usage: "tart prune [--entries <entries>] [--older-than <n>] [--space-budget <n>]",
	},
	"create": {
		name: "create",
		options: []option{
			{long: "from-ipsw", valueName: "path"}, {long: "linux"}, {long: "disk-size", valueName: "disk-size"},
			{long: "disk-format", valueName: "disk-format"},
		},
		positionals: []string{"<name>"},
		usage:       "tart create <name> [--from-ipsw <path>] [--linux] [--disk-size <disk-size>] [--disk-format <disk-format>]",
	},
	"rename": {
		name:        "rename",
		positionals: []string{"<name>", "<new-name>"},
		usage:       "tart rename <name> <new-name>",
	},
	"fqn": {
		name:        "fqn",
		positionals: []string{"<name>"},
		usage:       "tart fqn <name>",
	},
	"login": {
		name: "login",
		options: []option{
			{long: "username", valueName: "username"}, {long: "password-stdin"},
			{long: "insecure"}, {long: "no-validate"},
		},
		positionals: []string{"<host>"},
		usage:       "tart login <host> [--username <username>] [--password-stdin] [--insecure] [--no-validate]",
	},
}

func usageLine(cmd string) string {
	if s, ok := commandSpecs[cmd]; ok {
		return s.usage
	}
	return "tart <subcommand>"
}
