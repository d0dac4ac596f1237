package main

import (
	"os"
	"os/signal"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

var runCommand = &cli.Command{
	Name:      "run",
	Usage:     "create and run a container",
	ArgsUsage: "<container-id>",
	Description: `The run command creates an instance of a container for a bundle, starts it
and, unless --detach, relays its stdio, waits for it, deletes it and exits
with its exit status.`,
	Flags: append([]cli.Flag{
		&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "detach from the container's process"},
		&cli.BoolFlag{Name: "keep", Usage: "do not delete the container after it exits"},
		&cli.BoolFlag{Name: "no-subreaper", Usage: "accepted for compatibility with runc; kabuto run reaps only its shim, so it never acts as a subreaper"},
	}, createFlags...),
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1); err != nil {
			return err
		}
		opts, err := createOptions(c)
		if err != nil {
			return err
		}
		detach := c.Bool("detach")
		opts.Foreground = !detach
		opts.StartsNow = true
		r, err := newRuntime(c)
		if err != nil {
			return err
		}
		// A foreground terminal: the caller's tty becomes the container's,
		// raw on this side (the guest's pty does the line discipline).
		if !detach && opts.ConsoleSocket == "" {
			if restore, err := rawTerminal(0); err == nil {
				defer restore()
			}
		}
		created, err := r.Create(c.Context, opts)
		if err != nil {
			return err
		}
		if err := r.Start(c.Context, opts.ID); err != nil {
			r.Delete(c.Context, opts.ID, true)
			return err
		}
		if detach {
			return nil
		}
		// Signals sent to this process go on to the shim (and so to the
		// container's process). Terminal-generated ones reach the shim
		// directly: it shares our process group.
		sigs := make(chan os.Signal, 16)
		signal.Notify(sigs)
		go func() {
			for s := range sigs {
				switch s {
				case unix.SIGCHLD, unix.SIGURG, unix.SIGPIPE, unix.SIGWINCH, unix.SIGINT, unix.SIGQUIT, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
					continue
				}
				created.Shim.Signal(s)
			}
		}()
		ps, err := created.Shim.Wait()
		signal.Stop(sigs)
		if err != nil {
			return err
		}
		code := ps.ExitCode()
		if ws, ok := ps.Sys().(unix.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		if !c.Bool("keep") {
			if err := r.Delete(c.Context, opts.ID, true); err != nil {
				return err
			}
		}
		return cli.Exit("", code)
	},
}

// rawTerminal puts fd in raw mode if it is a terminal and returns the undo.
func rawTerminal(fd int) (func(), error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}
