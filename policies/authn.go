package policies

// authnStep compiles the authn step of a policy; nil when the policy has none.
func (c *compiler) authnStep(path, policy string, spec *Authn) middleware {
	return nil
}
