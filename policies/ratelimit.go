package policies

// rateLimitStep compiles the rate limits of a policy; nil when it has none.
func (c *compiler) rateLimitStep(path, policy string, spec []RateLimit) middleware {
	return nil
}
