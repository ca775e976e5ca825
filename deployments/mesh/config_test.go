package mesh

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/meshgate/meshgate/config"
)

// TestConfigsLoad checks that the configs the mesh generates are valid
// meshgate configs: a sidecar of each service and the edge.
func TestConfigsLoad(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"edge.yaml": edgeConfig(8080, 9901, 8500, "127.0.0.1:4318")}
	for _, svc := range Services {
		in := &Instance{Service: svc, ID: svc + "-19101"}
		files[svc+"-sidecar.yaml"] = sidecarConfig(in, 9101, 19101, 29101, 8500, "127.0.0.1:4318")
	}
	for name, text := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Errorf("%s:\n%v\n%s", name, err, text)
			continue
		}
		if name != "edge.yaml" && (cfg.Register == nil || cfg.Discovery.Consul == nil) {
			t.Errorf("%s does not register with Consul", name)
		}
	}
}
