package main

import "github.com/urfave/cli/v2"

var startCommand = &cli.Command{
	Name:      "start",
	Usage:     "executes the user defined process in a created container",
	ArgsUsage: "<container-id>",
	Description: `The start command executes the user defined process in a created container.
It prints nothing on success and never reads standard input.`,
	Action: func(c *cli.Context) error {
		id, r, err := oneContainer(c)
		if err != nil {
			return err
		}
		return notExist(id, r.Start(c.Context, id))
	},
}
