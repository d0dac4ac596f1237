// Command kabuto is an OCI runtime, a drop-in replacement for runc, that runs
// every container inside its own lightweight QEMU virtual machine.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
)

// Set at build time with -ldflags "-X main.version=… -X main.gitCommit=…".
var (
	version   = "0.1.0"
	gitCommit = ""
)

const usage = `Open Container Initiative runtime that runs each container in its own VM

kabuto is a command line client for running applications packaged according
to the Open Container Initiative (OCI) format, and a drop-in replacement for
runc: docker, podman, CRI-O and containerd call it exactly as they call runc.
Every container gets its own lightweight QEMU virtual machine with its own
guest kernel; the container's process runs in the guest, managed by
kabuto-agent, while a small host process (the shim) stands for it.

Containers are configured using bundles. A bundle for a container is a
directory that includes a specification file named "` + specConfig + `" and a
root filesystem.

To start a new instance of a container:

    # kabuto run [ -b bundle ] <container-id>`

const specConfig = "config.json"

func versionString() string {
	commit := gitCommit
	if commit == "" {
		commit = "unknown"
	}
	return fmt.Sprintf("kabuto version %s\ncommit: %s\nspec: %s\ngo: %s", version, commit, specs.Version, runtime.Version())
}

func newApp() *cli.App {
	cli.VersionPrinter = func(*cli.Context) { fmt.Println(versionString()) }
	app := &cli.App{
		Name:                 "kabuto",
		Usage:                usage,
		Version:              version,
		HideVersion:          false,
		EnableBashCompletion: false,
		// As in runc (urfave/cli v1): `--env A=1,2` is one value.
		DisableSliceFlagSeparator: true,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "debug", Usage: "enable debug logging"},
			&cli.StringFlag{Name: "log", Usage: "set the log file to write kabuto logs to (default is '/dev/stderr')"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "set the log format ('text' (default), or 'json')"},
			&cli.StringFlag{Name: "root", Value: "/run/kabuto", Usage: "root directory for storage of container state (this should be located in tmpfs)"},
			&cli.StringFlag{Name: "config", Usage: "kabuto configuration file (default $KABUTO_CONFIG or /etc/kabuto/configuration.toml)"},
			&cli.StringFlag{Name: "criu", Value: "criu", Usage: "accepted for compatibility with runc; checkpointing is not supported"},
			&cli.BoolFlag{Name: "systemd-cgroup", Usage: "interpret cgroupsPath as slice:prefix:name, as systemd's cgroup driver does"},
			&cli.StringFlag{Name: "rootless", Value: "auto", Usage: "accepted for compatibility with runc; kabuto runs as root"},
		},
		Commands: []*cli.Command{
			checkCommand,
			checkpointCommand,
			createCommand,
			deleteCommand,
			envCommand,
			eventsCommand,
			execCommand,
			featuresCommand,
			killCommand,
			listCommand,
			pauseCommand,
			psCommand,
			restoreCommand,
			resumeCommand,
			runCommand,
			specCommand,
			startCommand,
			stateCommand,
			updateCommand,
			versionCommand,
			shimCommand,
			templateCommand,
		},
		Before: setupLogging,
		// Unknown verbs and flags are reported like any other error.
		CommandNotFound: func(c *cli.Context, name string) {
			fatal(fmt.Errorf("unknown command %q for %q", name, c.App.Name))
		},
		OnUsageError: func(c *cli.Context, err error, isSubcommand bool) error {
			return err
		},
		Writer:    os.Stdout,
		ErrWriter: os.Stderr,
	}
	return app
}

func main() {
	closeExecFrom(3)
	app := newApp()
	if err := app.Run(os.Args); err != nil {
		fatal(err)
	}
}

// setupLogging routes logrus to --log in --log-format. Without --log,
// logs are dropped unless --debug (then stderr): errors reach stderr anyway.
func setupLogging(c *cli.Context) error {
	logrus.SetOutput(io.Discard)
	if c.Bool("debug") {
		logrus.SetLevel(logrus.DebugLevel)
		logrus.SetOutput(os.Stderr)
	}
	switch f := c.String("log-format"); f {
	case "text", "":
		logrus.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true})
	case "json":
		logrus.SetFormatter(&logrus.JSONFormatter{})
	default:
		return fmt.Errorf("unknown log-format %q", f)
	}
	if path := c.String("log"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_SYNC|unixCloexec, 0o644)
		if err != nil {
			return err
		}
		logrus.SetOutput(f)
	}
	return nil
}

// fatal logs err (docker and containerd read the last error of --log) and
// prints it on stderr (podman shows stderr), then exits 1.
func fatal(err error) {
	msg := strings.TrimSpace(err.Error())
	logrus.Error(msg)
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(1)
}
