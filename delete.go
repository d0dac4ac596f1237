package main

import "github.com/urfave/cli/v2"

var deleteCommand = &cli.Command{
	Name:      "delete",
	Usage:     "delete any resources held by the container often used with detached container",
	ArgsUsage: "<container-id>",
	Description: `The delete command stops the container's VM and removes every resource kabuto
made for it: mounts, network namespace, cgroups and state. As with runc, a
created container (never started) is stopped and deleted; a running or
paused one is deleted only with --force (its processes get SIGKILL first);
--force of an unknown container succeeds quietly.`,
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "Forcibly deletes the container if it is still running (uses SIGKILL)"},
	},
	Action: func(c *cli.Context) error {
		id, r, err := oneContainer(c)
		if err != nil {
			return err
		}
		return notExist(id, r.Delete(c.Context, id, c.Bool("force")))
	},
}
