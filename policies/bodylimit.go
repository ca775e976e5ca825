package policies

import "github.com/meshgate/meshgate/config"

// bodyLimitStep compiles max_body_size; nil when it is not set.
func (c *compiler) bodyLimitStep(path, policy string, limit config.Size) middleware {
	return nil
}
