package policies

// corsStep compiles the cors step of a policy; nil when the policy has none.
func (c *compiler) corsStep(path, policy string, spec *CORS) middleware {
	return nil
}
