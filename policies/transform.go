package policies

// transformStep compiles the transform step of a policy; nil when the policy has none.
func (c *compiler) transformStep(path, policy string, spec *Transforms) middleware {
	return nil
}
