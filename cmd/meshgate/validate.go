package main

import (
	"errors"
	"fmt"

	"github.com/meshgate/meshgate/config"
	"github.com/spf13/cobra"
)

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check configuration files",
		Long: `validate loads each file as meshgate would and prints every problem as
file:line: field: message. It exits 0 when all files are valid, 1 otherwise.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bad := false
			for _, f := range args {
				if _, err := config.Load(f); err != nil {
					bad = true
					var errs config.Errors
					if errors.As(err, &errs) {
						for _, e := range errs {
							fmt.Fprintln(cmd.ErrOrStderr(), e)
						}
					} else {
						fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", f, err)
					}
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", f)
			}
			if bad {
				return exitError{code: 1}
			}
			return nil
		},
	}
}
