package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
)

// templateCommand manages VM templates (docs/templating.md). It is hidden:
// runc has no such verb, and creates make templates when they need them.
var templateCommand = &cli.Command{
	Name:   "template",
	Usage:  "manage the VM templates containers start from (factory.enable_template)",
	Hidden: true,
	Subcommands: []*cli.Command{
		{
			Name:      "create",
			Usage:     "make the template for VMs of the configured shape, if there is none",
			ArgsUsage: " ",
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "nics", Value: 1, Usage: "network interfaces of the VMs (docker and containerd give one)"},
			},
			Action: func(c *cli.Context) error {
				if err := checkArgs(c, 0); err != nil {
					return err
				}
				r, err := newRuntime(c)
				if err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*r.Config.StartTimeout())
				defer cancel()
				key, err := r.MakeTemplate(ctx, c.Int("nics"))
				if err != nil {
					return err
				}
				fmt.Println(key)
				return nil
			},
		},
		{
			Name:      "status",
			Usage:     "list the templates",
			ArgsUsage: " ",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "table or json"},
			},
			Action: func(c *cli.Context) error {
				if err := checkArgs(c, 0); err != nil {
					return err
				}
				r, err := newRuntime(c)
				if err != nil {
					return err
				}
				ts := r.Templates()
				switch c.String("format") {
				case "json":
					if ts == nil {
						return json.NewEncoder(os.Stdout).Encode([]any{})
					}
					return json.NewEncoder(os.Stdout).Encode(ts)
				case "table":
				default:
					return fmt.Errorf("invalid format option")
				}
				fmt.Printf("templating %s, path %s\n", map[bool]string{true: "enabled", false: "disabled"}[r.Config.Factory.EnableTemplate], r.Config.Factory.TemplatePath)
				w := tabwriter.NewWriter(os.Stdout, 8, 1, 2, ' ', 0)
				fmt.Fprint(w, "KEY\tSTATUS\tVCPUS\tMEMORY\tNICS\tRAM HELD\tCREATED\n")
				for _, t := range ts {
					status, vcpus, mem, nics, created := "incomplete", "-", "-", "-", "-"
					if m := t.Meta; m != nil {
						status = "ready"
						if t.Stale {
							status = "stale"
						}
						vcpus, mem, nics = fmt.Sprint(m.VCPUs), fmt.Sprintf("%d MiB", m.MemoryMiB), fmt.Sprint(m.NICs)
						created = m.Created.Format(time.RFC3339)
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%.1f MiB\t%s\n", t.Key[:min(16, len(t.Key))], status, vcpus, mem, nics, float64(t.MemoryBytes)/(1<<20), created)
				}
				return w.Flush()
			},
		},
		{
			Name:      "destroy",
			Usage:     "remove every template (running containers are not affected)",
			ArgsUsage: " ",
			Action: func(c *cli.Context) error {
				if err := checkArgs(c, 0); err != nil {
					return err
				}
				r, err := newRuntime(c)
				if err != nil {
					return err
				}
				return r.DestroyTemplates()
			},
		},
	},
}
