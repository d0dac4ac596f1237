package main

import (
	"encoding/json"
	"os"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/kabuto-runtime/kabuto/protocol"
	"github.com/kabuto-runtime/kabuto/shim"
)

// shimCommand is the hidden entry point of the shim (see package shim):
// create and exec start it as a copy of this binary.
var shimCommand = &cli.Command{
	Name:   "shim",
	Hidden: true,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "state-dir", Required: true},
		&cli.StringFlag{Name: "process", Required: true},
		&cli.BoolFlag{Name: "owner"},
		&cli.BoolFlag{Name: "terminal"},
		&cli.BoolFlag{Name: "stdin"},
		&cli.StringFlag{Name: "exec-request"},
	},
	Action: func(c *cli.Context) error {
		opts := shim.Options{
			StateDir: c.String("state-dir"),
			Process:  c.String("process"),
			Owner:    c.Bool("owner"),
			Terminal: c.Bool("terminal"),
			Stdin:    c.Bool("stdin"),
			Sync:     os.NewFile(3, "sync"),
			Log:      func(f string, a ...any) { logrus.Errorf(f, a...) },
		}
		if opts.Terminal {
			opts.TTY = os.NewFile(4, "tty")
		}
		if p := c.String("exec-request"); p != "" {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			var req protocol.ExecRequest
			if err := json.Unmarshal(b, &req); err != nil {
				return err
			}
			opts.Exec = &req
		}
		os.Exit(shim.Run(opts))
		return nil
	},
}
