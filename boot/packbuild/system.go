package packbuild

import (
	"context"
	"io"
	"os/exec"
)

// Host runs commands on this machine.
type Host struct{}

// Exec runs name with args, its output (stdout and stderr) to out.
func (Host) Exec(ctx context.Context, out io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	return cmd.Run()
}
