package main

import (
	"fmt"
	"os"

	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/policies"
	"github.com/spf13/cobra"
)

func newValidateCmd() *cobra.Command {
	var policyPaths []string
	cmd := &cobra.Command{
		Use:   "validate [FILE...] [--policies DIR|FILE]...",
		Short: "Check configuration and policy files",
		Long: `validate loads each configuration file as meshgate would, with the policy
files its policies.dir names, and prints every problem as
file:line: field: message. --policies checks policy files or directories on
their own (route and service names are then not checked). Nothing is
fetched or connected: JWKS URLs and Redis are only checked for syntax.
It exits 0 when everything is valid, 1 otherwise.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && len(policyPaths) == 0 {
				return fmt.Errorf("nothing to validate; give configuration files and/or --policies")
			}
			bad := false
			report := func(name string, err error) {
				if err != nil {
					bad = true
					printProblems(cmd.ErrOrStderr(), name, err)
					return
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", name)
			}
			for _, f := range args {
				cfg, err := config.Load(f)
				if err == nil {
					err = validatePolicies(cfg)
				}
				report(f, err)
			}
			for _, p := range policyPaths {
				report(p, validatePolicyPath(p))
			}
			if bad {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&policyPaths, "policies", nil, "a policy file or directory to check on its own (repeatable)")
	return cmd
}

// validatePolicyPath checks a policy file, or the policy files of a
// directory, on their own. Global rate limits are accepted (the config
// that would give them a Redis is not known here).
func validatePolicyPath(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	var sources []policies.Source
	if st.IsDir() {
		sources, err = policies.ReadDir(path)
	} else {
		sources, err = policies.ReadFiles(path)
	}
	if err != nil {
		return err
	}
	_, err = policies.Validate(sources, true)
	return err
}
