package config

import (
	"maps"
	"slices"
)

// RedactedValue replaces secrets in [Config.Redacted].
const RedactedValue = "[redacted]"

// Redacted returns a deep copy of c that is safe to show, for example in
// /admin/config: the TLS key_file of every listener reads "[redacted]"
// (the private key's location is as sensitive as the deployment makes
// it), and so does discovery.consul.token when it is set. The copy shares no slices, maps or pointers with c, so neither can
// change the other. A nil c gives nil.
func (c *Config) Redacted() *Config {
	if c == nil {
		return nil
	}
	out := c.clone()
	for i := range out.Listeners {
		if t := out.Listeners[i].TLS; t != nil && t.KeyFile != "" {
			t.KeyFile = RedactedValue
		}
	}
	if cc := out.Discovery.Consul; cc != nil && cc.Token != "" {
		cc.Token = RedactedValue
	}
	return out
}

// clone returns a deep copy of c.
func (c *Config) clone() *Config {
	out := *c
	out.Listeners = slices.Clone(c.Listeners)
	for i := range out.Listeners {
		if t := out.Listeners[i].TLS; t != nil {
			cp := *t
			out.Listeners[i].TLS = &cp
		}
	}
	if c.Services != nil {
		out.Services = make(map[string]Service, len(c.Services))
		for name, s := range c.Services {
			if s.LoadBalancer.HashOn != nil {
				h := *s.LoadBalancer.HashOn
				s.LoadBalancer.HashOn = &h
			}
			s.Retry.Statuses = slices.Clone(s.Retry.Statuses)
			s.Instances = slices.Clone(s.Instances)
			for i := range s.Instances {
				in := &s.Instances[i]
				in.Tags = slices.Clone(in.Tags)
				in.Meta = maps.Clone(in.Meta)
			}
			out.Services[name] = s
		}
	}
	out.Routes = slices.Clone(c.Routes)
	for i := range out.Routes {
		m := &out.Routes[i].Match
		m.Methods = slices.Clone(m.Methods)
		m.Headers = maps.Clone(m.Headers)
		if a := out.Routes[i].Aggregate; a != nil {
			cp := *a
			cp.Parts = slices.Clone(a.Parts)
			for j := range cp.Parts {
				cp.Parts[j].Needs = slices.Clone(cp.Parts[j].Needs)
			}
			out.Routes[i].Aggregate = &cp
		}
	}
	if c.Discovery.Consul != nil {
		cc := *c.Discovery.Consul
		cc.Tags = slices.Clone(cc.Tags)
		out.Discovery.Consul = &cc
	}
	if c.Register != nil {
		r := *c.Register
		r.Tags = slices.Clone(r.Tags)
		r.Meta = maps.Clone(r.Meta)
		out.Register = &r
	}
	if c.Policies != nil {
		pc := *c.Policies
		if pc.Redis != nil {
			r := *pc.Redis
			pc.Redis = &r
		}
		out.Policies = &pc
	}
	return &out
}
