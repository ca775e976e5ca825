package discovery

import (
	"context"
	"time"

	"github.com/meshgate/meshgate/config"
)

// Static is the source for the config file's static catalog. It publishes
// one snapshot and then waits for cancellation; a config reload starts a new
// Static with the new catalog.
type Static struct {
	snap *Snapshot
}

var _ Source = (*Static)(nil)

// NewStatic builds the static source for the services of cfg.
func NewStatic(services map[string]config.Service) *Static {
	return &Static{snap: StaticSnapshot(services, time.Now())}
}

// StaticSnapshot turns the config's static catalog into a snapshot.
func StaticSnapshot(services map[string]config.Service, now time.Time) *Snapshot {
	byName := make(map[string][]*Instance, len(services))
	for name, svc := range services {
		insts := make([]*Instance, 0, len(svc.Instances))
		for _, in := range svc.Instances {
			insts = append(insts, NewInstance(Instance{
				ID:      in.ID,
				Service: name,
				Address: in.Address,
				Port:    in.Port,
				Weight:  in.Weight,
				Tags:    in.Tags,
				Meta:    in.Meta,
				Health:  Health(in.Health),
				Source:  "static",
			}))
		}
		byName[name] = insts
	}
	return NewSnapshot("static", byName, now)
}

// Run publishes the static snapshot once and blocks until ctx is done.
func (s *Static) Run(ctx context.Context, publish func(*Snapshot)) error {
	publish(s.snap)
	<-ctx.Done()
	return nil
}
