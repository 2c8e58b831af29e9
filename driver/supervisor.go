// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"bytes"
	"regexp"
	"sort"
	"strings"
)

// Guest-side names.
const (
	guestPIDFile   = ".ntart-task.pid" // in the guest's $HOME: the guest command's PID
	envBlockEnd    = "."               // line ending the env block on the guest's stdin
	supervisorArg0 = "ntart"           // $0 of the guest wrapper shell
)

// guestWrapper is run by /bin/sh in the guest. It reads the task's
// environment from stdin (KEY=value lines, backslash escapes for newlines,
// ended by a "." line), records its PID in $HOME so signals can be
// delivered with another tart exec, and execs the command (same PID) with
// the rest of stdin (the payload, if any). The shell reads one byte at a
// time from a pipe, so it never consumes the payload. It execs rather than
// running the command in the background because a non-interactive shell
// starts background jobs with SIGINT ignored, which would defeat
// kill_signal = "SIGINT".
//
// Before the exec it checks that the command can run, and if not says so
// as a shell does for a command of its own ("/x: not found", exit 127;
// "/x: Permission denied", exit 126): a failed exec would make the shell
// prefix its own $0 and line number ("ntart: 12: exec: /x: not found"),
// which the user sees in the task's stderr and knows nothing about.
const guestWrapper = `__ntart_pf="${HOME:-/tmp}/` + guestPIDFile + `"
while IFS= read -r __ntart_l; do
  [ "$__ntart_l" = "` + envBlockEnd + `" ] && break
  __ntart_k=${__ntart_l%%=*}
  __ntart_v=${__ntart_l#*=}
  case $__ntart_v in *\\*) __ntart_v=$(printf '%b' "$__ntart_v") ;; esac
  export "$__ntart_k=$__ntart_v"
done
unset __ntart_l __ntart_k __ntart_v
echo "$$" > "$__ntart_pf"
unset __ntart_pf
case $1 in
*/*)
  if [ ! -e "$1" ]; then printf '%s: not found\n' "$1" >&2; exit 127; fi
  if [ -d "$1" ] || [ ! -x "$1" ]; then printf '%s: Permission denied\n' "$1" >&2; exit 126; fi ;;
*)
  if ! command -v "$1" >/dev/null 2>&1; then printf '%s: not found\n' "$1" >&2; exit 127; fi ;;
esac
exec "$@"
`

// guestArgv wraps the task's command in guestWrapper.
func guestArgv(command string, args []string) []string {
	return append([]string{"/bin/sh", "-c", guestWrapper, supervisorArg0, command}, args...)
}

// signalArgv is the guest argv that delivers sig (e.g. "TERM") to the
// task's command. A command that has already exited is not an error: a
// stop that races with the command's own end is normal and stays quiet.
func signalArgv(sig string) []string {
	// The PID file is written right after the command starts: wait up to
	// 5 s for it, so a signal sent just after StartTask is not lost.
	const script = `f="${HOME:-/tmp}/` + guestPIDFile + `"; i=0
while [ ! -s "$f" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
p=$(cat "$f" 2>/dev/null) || { echo "the command never recorded its pid" >&2; exit 1; }
kill -s "$1" "$p" 2>/dev/null && exit 0
kill -0 "$p" 2>/dev/null || exit 0
echo "failed to send $1 to pid $p" >&2; exit 1`
	return []string{"/bin/sh", "-c", script, supervisorArg0, sig}
}

var envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// envBlock encodes env for guestWrapper. Keys that are not shell names are
// skipped (export would abort the wrapper).
func envBlock(env map[string]string) []byte {
	keys := make([]string, 0, len(env))
	for k := range env {
		if envKeyRE.MatchString(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b bytes.Buffer
	esc := strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`)
	for _, k := range keys {
		b.WriteString(k + "=" + esc.Replace(env[k]) + "\n")
	}
	b.WriteString(envBlockEnd + "\n")
	return b.Bytes()
}
