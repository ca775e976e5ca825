package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/meshgate/meshgate/policies"
	"github.com/spf13/cobra"
)

func newHashKeyCmd() *cobra.Command {
	var generate bool
	cmd := &cobra.Command{
		Use:   "hash-key [--generate]",
		Short: "Print the SHA-256 of an API key for a policy file",
		Long: `hash-key reads an API key from standard input (one line) and prints the
sha256 value to put in a policy's authn.api_keys.keys[].sha256, so that the
key itself never sits in a file. --generate makes a new random key (32
bytes, base64url) and prints the key, then its hash.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if generate {
				b := make([]byte, 32)
				_, _ = rand.Read(b) // crypto/rand.Read never fails
				key := base64.RawURLEncoding.EncodeToString(b)
				fmt.Fprintf(cmd.OutOrStdout(), "key:    %s\nsha256: %s\n", key, policies.HashAPIKey(key))
				return nil
			}
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			key := strings.TrimRight(line, "\r\n")
			if key == "" {
				if err != nil {
					return fmt.Errorf("reading the key from standard input: %w", err)
				}
				return fmt.Errorf("the key on standard input is empty")
			}
			fmt.Fprintln(cmd.OutOrStdout(), policies.HashAPIKey(key))
			return nil
		},
	}
	cmd.Flags().BoolVar(&generate, "generate", false, "generate a new random key and print it with its hash")
	return cmd
}
