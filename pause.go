package main

import "github.com/urfave/cli/v2"

var pauseCommand = &cli.Command{
	Name:        "pause",
	Usage:       "pause suspends all processes inside the container",
	ArgsUsage:   "<container-id>",
	Description: `The pause command stops the container's VM (its vCPUs stop; memory stays).`,
	Action: func(c *cli.Context) error {
		id, r, err := oneContainer(c)
		if err != nil {
			return err
		}
		return notExist(id, r.Pause(c.Context, id))
	},
}

var resumeCommand = &cli.Command{
	Name:        "resume",
	Usage:       "resumes all processes that have been previously paused",
	ArgsUsage:   "<container-id>",
	Description: `The resume command lets a paused container's VM run again.`,
	Action: func(c *cli.Context) error {
		id, r, err := oneContainer(c)
		if err != nil {
			return err
		}
		return notExist(id, r.Resume(c.Context, id))
	},
}
