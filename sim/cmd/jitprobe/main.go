// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Command jitprobe stands in for the GitHub Actions runner in dockerexec's
// tests on a real Docker engine. Built static and imported into an offline
// test image, it reads the JIT config the way the runner does
// (ACTIONS_RUNNER_INPUT_JITCONFIG, or --jitconfig), decodes it (base64 JSON
// map of base64 files, with the registration in ".runner"), prints what it
// found and exits.
//
// Exit codes: 0 ok (or FAKERUNNER_EXIT), 3 no JIT config, 4 malformed JIT
// config, 5 the file named by FAKERUNNER_JIT_FILE still holds data (the
// file-delivery wrapper must have emptied it). FAKERUNNER_HOLD (a Go
// duration) keeps it running before it exits, for tests that need running
// containers.
package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/tartnomad/nomad-driver-tart/version"
)

const jitEnv = "ACTIONS_RUNNER_INPUT_JITCONFIG"

func main() { os.Exit(run(os.Args[1:])) }

const usage = `Usage: jitprobe [--jitconfig CONFIG] [--version | --help]

A stand-in for the GitHub Actions runner in dockerexec's image tests: it
reads the JIT config from --jitconfig or ACTIONS_RUNNER_INPUT_JITCONFIG,
decodes it, prints what it found and exits (0 ok, 3 no JIT config, 4
malformed, 5 the JIT file still holds data). FAKERUNNER_HOLD=<duration>
keeps it running first; FAKERUNNER_EXIT sets the exit code.
`

func run(args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "--help", "-help", "-h":
			fmt.Print(usage)
			return 0
		case "--version", "-version":
			fmt.Println(version.Full("jitprobe"))
			return 0
		}
	}
	jit := os.Getenv(jitEnv)
	// Like the runner: the argument wins, and the variable is dropped from
	// the environment once read.
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--jitconfig" {
			jit = args[i+1]
		}
	}
	_ = os.Unsetenv(jitEnv)
	if jit == "" {
		fmt.Fprintln(os.Stderr, "fakerunner: no JIT config")
		return 3
	}
	name, files, err := decode(jit)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fakerunner: malformed JIT config: %v\n", err)
		return 4
	}
	if f := os.Getenv("FAKERUNNER_JIT_FILE"); f != "" {
		if b, err := os.ReadFile(f); err == nil && len(b) > 0 {
			fmt.Fprintf(os.Stderr, "fakerunner: %s still holds %d bytes\n", f, len(b))
			return 5
		}
	}
	fmt.Printf("fakerunner: runner=%s files=%d uid=%d\n", name, files, os.Getuid())
	if d, err := time.ParseDuration(os.Getenv("FAKERUNNER_HOLD")); err == nil {
		time.Sleep(d)
	}
	code, _ := strconv.Atoi(os.Getenv("FAKERUNNER_EXIT"))
	return code
}

// decode returns the agent name from the ".runner" file and the file count.
func decode(jit string) (string, int, error) {
	raw, err := base64.StdEncoding.DecodeString(jit)
	if err != nil {
		return "", 0, fmt.Errorf("outer base64: %w", err)
	}
	var files map[string]string
	if err := json.Unmarshal(raw, &files); err != nil {
		return "", 0, fmt.Errorf("file map: %w", err)
	}
	runnerFile, ok := files[".runner"]
	if !ok {
		return "", 0, fmt.Errorf("no .runner file")
	}
	body, err := base64.StdEncoding.DecodeString(runnerFile)
	if err != nil {
		return "", 0, fmt.Errorf(".runner base64: %w", err)
	}
	var settings struct {
		AgentName string `json:"agentName"`
	}
	if err := json.Unmarshal(body, &settings); err != nil {
		return "", 0, fmt.Errorf(".runner has no agentName: %w", err)
	}
	if settings.AgentName == "" {
		return "", 0, errors.New(".runner has no agentName")
	}
	return settings.AgentName, len(files), nil
}
