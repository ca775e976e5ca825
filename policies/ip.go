package policies

// ipStep compiles the ip step of a policy; nil when the policy has none.
func (c *compiler) ipStep(path, policy string, spec *IPList) middleware {
	return nil
}
