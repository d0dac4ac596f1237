package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kabuto-runtime/kabuto/vmstate"
)

var listCommand = &cli.Command{
	Name:      "list",
	Aliases:   []string{"ps-all"},
	Usage:     "lists containers started by kabuto with the given root",
	ArgsUsage: " ",
	Description: `The list command lists containers started by kabuto with the given root:
a table by default, JSON with --format json, ids only with --quiet.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: `select one of: table or json`},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "display only container IDs"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 0); err != nil {
			return err
		}
		store := vmstate.Store{Root: c.String("root")}
		ids, err := store.List()
		if err != nil {
			return err
		}
		var states []containerState
		for _, id := range ids {
			st, err := store.Load(id)
			if err != nil {
				continue // deleted meanwhile
			}
			states = append(states, describe(st))
		}
		if c.Bool("quiet") {
			for _, s := range states {
				fmt.Println(s.ID)
			}
			return nil
		}
		switch c.String("format") {
		case "table":
			w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
			fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
			for _, s := range states {
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, s.Bundle, s.Created.Format(time.RFC3339Nano), s.Owner)
			}
			return w.Flush()
		case "json":
			if states == nil {
				states = []containerState{}
			}
			return json.NewEncoder(os.Stdout).Encode(states)
		default:
			return fmt.Errorf("invalid format option")
		}
	},
}
