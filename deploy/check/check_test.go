//go:build deploycheck

// Package check validates the deployment files offline: it renders the
// Helm chart (deploy/helm/damselfly) with the helm binary built from its Go
// module, for default and non-default values, decodes every rendered
// manifest strictly into its k8s.io/api (or Prometheus Operator) type —
// unknown or duplicate fields are errors — checks the references between
// them (mounts, selectors, services, Secret modes), and runs each daemon's
// rendered configuration file through that daemon (--print-config), so a
// key the daemon does not know fails the check. Run it with deploy/check.sh.
package check

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

var helmBin = flag.String("helm", os.Getenv("HELM"), "helm binary (deploy/check.sh builds it into bin/tools)")

const chart = "../helm/damselfly"

// bins holds the daemons built once for the configuration check.
var bins string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "damselfly-deploycheck-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins = dir
	build := exec.Command("go", "build", "-o", dir+"/", "../../cmd/supernode", "../../cmd/dfdaemon", "../../cmd/df-snapshotter")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the daemons:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// rendered is one chart rendering, decoded.
type rendered struct {
	configMaps   map[string]*corev1.ConfigMap
	services     map[string]*corev1.Service
	secrets      map[string]*corev1.Secret
	statefulSets []*appsv1.StatefulSet
	daemonSets   []*appsv1.DaemonSet
	monitors     []*monitoringv1.ServiceMonitor
}

func TestChart(t *testing.T) {
	if *helmBin == "" {
		t.Fatal("no helm binary: run deploy/check.sh, or pass -helm PATH / set $HELM")
	}
	tests := []struct {
		name   string
		values []string // files under testdata
		set    []string
		want   func(t *testing.T, r *rendered)
	}{
		{"defaults", nil, nil, func(t *testing.T, r *rendered) {
			count(t, r, 1, 1, 0, 0)
			if n := *r.statefulSets[0].Spec.Replicas; n != 1 {
				t.Errorf("supernode replicas %d", n)
			}
		}},
		{"fleet with tokens, TLS, mirrors, metrics and ServiceMonitors", []string{"testdata/fleet.yaml"}, nil, func(t *testing.T, r *rendered) {
			count(t, r, 1, 1, 1, 2)
			for _, m := range r.monitors {
				for _, ep := range m.Spec.Endpoints {
					if ep.Authorization != nil || ep.TLSConfig != nil {
						t.Errorf("ServiceMonitor %s endpoint %s: the metrics listener is plain HTTP without a token", m.Name, ep.Port)
					}
				}
			}
			for _, c := range r.daemonSets[0].Spec.Template.Spec.Containers {
				listen := ""
				for _, e := range c.Env {
					if e.Name == "DAMSELFLY_METRICS_LISTEN" {
						listen = e.Value
					}
				}
				if !strings.HasPrefix(listen, "$(DAMSELFLY_ADVERTISE_IP):") {
					t.Errorf("container %s: DAMSELFLY_METRICS_LISTEN = %q, want the node's IP", c.Name, listen)
				}
			}
			if !strings.Contains(only(r.configMaps).Data["supernode.yaml"], "metrics-listen: 0.0.0.0:9102") {
				t.Error("supernode configuration lacks metrics-listen")
			}
			if n := *r.statefulSets[0].Spec.Replicas; n != 3 {
				t.Errorf("supernode replicas %d", n)
			}
			cm := only(r.configMaps)
			for _, want := range []string{"rel-damselfly-supernode-2.rel-damselfly-supernode.damselfly.svc:8002", "proxy-rule:", `"docker.io=mirror-a.local,mirror-b.local"`, "cluster-token-file: /etc/damselfly/tokens/cluster-token", "cert: /etc/damselfly/tls/tls.crt"} {
				if !strings.Contains(cm.Data["dfdaemon.yaml"]+cm.Data["df-snapshotter.yaml"], want) {
					t.Errorf("node configuration lacks %q", want)
				}
			}
			if len(r.daemonSets[0].Spec.Template.Spec.InitContainers) != 1 {
				t.Error("configureMirrors: no init container writing hosts.toml")
			}
		}},
		{"existing token Secret, snapshotter off", []string{"testdata/existing-secret.yaml"}, nil, func(t *testing.T, r *rendered) {
			count(t, r, 1, 1, 0, 0)
			for _, c := range r.daemonSets[0].Spec.Template.Spec.Containers {
				if c.Name == "df-snapshotter" {
					t.Error("df-snapshotter rendered although disabled")
				}
			}
		}},
		{"supernode without persistence", nil, []string{"supernode.persistence.enabled=false", "supernode.replicas=2"}, func(t *testing.T, r *rendered) {
			if len(r.statefulSets[0].Spec.VolumeClaimTemplates) != 0 {
				t.Error("volume claim rendered although persistence is off")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := helm(t, tc.values, tc.set)
			if err != nil {
				t.Fatal(err)
			}
			r := decode(t, out)
			validate(t, r)
			tc.want(t, r)
		})
	}
}

// TestChartRefuses: values that cannot work are refused at render time.
func TestChartRefuses(t *testing.T) {
	if *helmBin == "" {
		t.Fatal("no helm binary")
	}
	tests := []struct {
		name string
		set  []string
		want string
	}{
		{"TLS without a Secret", []string{"tls.enabled=true"}, "tls.existingSecret is required"},
		{"token Secret without a token", []string{"tokens.enabled=true", "tokens.create=true"}, "tokens.clusterToken is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helm(t, nil, tc.set)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func helm(t *testing.T, values, set []string) ([]byte, error) {
	args := []string{"template", "rel", chart, "--namespace", "damselfly"}
	for _, v := range values {
		args = append(args, "-f", v)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	cmd := exec.Command(*helmBin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// decode splits the rendering into documents and decodes each strictly
// into its type.
func decode(t *testing.T, out []byte) *rendered {
	t.Helper()
	r := &rendered{configMaps: map[string]*corev1.ConfigMap{}, services: map[string]*corev1.Service{}, secrets: map[string]*corev1.Secret{}}
	rd := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("split the rendering: %v", err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("read kind: %v\n%s", err, doc)
		}
		if tm.Kind == "" {
			continue // an empty document (a template that rendered nothing)
		}
		var obj any
		switch tm.APIVersion + "/" + tm.Kind {
		case "v1/ConfigMap":
			o := &corev1.ConfigMap{}
			obj, r.configMaps[name(t, doc)] = o, o
		case "v1/Service":
			o := &corev1.Service{}
			obj, r.services[name(t, doc)] = o, o
		case "v1/Secret":
			o := &corev1.Secret{}
			obj, r.secrets[name(t, doc)] = o, o
		case "apps/v1/StatefulSet":
			o := &appsv1.StatefulSet{}
			obj, r.statefulSets = o, append(r.statefulSets, o)
		case "apps/v1/DaemonSet":
			o := &appsv1.DaemonSet{}
			obj, r.daemonSets = o, append(r.daemonSets, o)
		case "monitoring.coreos.com/v1/ServiceMonitor":
			o := &monitoringv1.ServiceMonitor{}
			obj, r.monitors = o, append(r.monitors, o)
		default:
			t.Errorf("unexpected kind %s %s", tm.APIVersion, tm.Kind)
			continue
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Errorf("%s %s does not decode strictly: %v\n%s", tm.Kind, name(t, doc), err, doc)
		}
	}
	return r
}

func name(t *testing.T, doc []byte) string {
	var m struct {
		Metadata struct{ Name string } `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &m); err != nil || m.Metadata.Name == "" {
		t.Fatalf("a document without a name: %v\n%s", err, doc)
	}
	return m.Metadata.Name
}

func count(t *testing.T, r *rendered, sts, ds, secrets, monitors int) {
	t.Helper()
	if len(r.statefulSets) != sts || len(r.daemonSets) != ds || len(r.secrets) != secrets || len(r.monitors) != monitors {
		t.Errorf("rendered %d StatefulSets, %d DaemonSets, %d Secrets, %d ServiceMonitors; want %d, %d, %d, %d",
			len(r.statefulSets), len(r.daemonSets), len(r.secrets), len(r.monitors), sts, ds, secrets, monitors)
	}
}

func only(m map[string]*corev1.ConfigMap) *corev1.ConfigMap {
	for _, v := range m {
		return v
	}
	return &corev1.ConfigMap{}
}

// validate checks what strict decoding cannot: references between objects.
func validate(t *testing.T, r *rendered) {
	t.Helper()
	for _, s := range r.statefulSets {
		selects(t, "StatefulSet "+s.Name, s.Spec.Selector, s.Spec.Template.Labels)
		svc, ok := r.services[s.Spec.ServiceName]
		if !ok || svc.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("StatefulSet %s: serviceName %q is not a rendered headless Service", s.Name, s.Spec.ServiceName)
		} else if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(s.Spec.Template.Labels)) {
			t.Errorf("Service %s does not select StatefulSet %s's pods", svc.Name, s.Name)
		}
		claims := map[string]bool{}
		for _, c := range s.Spec.VolumeClaimTemplates {
			claims[c.Name] = true
		}
		pod(t, r, "StatefulSet "+s.Name, &s.Spec.Template.Spec, claims)
	}
	for _, d := range r.daemonSets {
		selects(t, "DaemonSet "+d.Name, d.Spec.Selector, d.Spec.Template.Labels)
		pod(t, r, "DaemonSet "+d.Name, &d.Spec.Template.Spec, nil)
	}
	for _, m := range r.monitors {
		sel, err := metav1.LabelSelectorAsSelector(&m.Spec.Selector)
		if err != nil {
			t.Errorf("ServiceMonitor %s: %v", m.Name, err)
			continue
		}
		found := false
		for _, svc := range r.services {
			if sel.Matches(labels.Set(svc.Labels)) {
				found = true
				for _, ep := range m.Spec.Endpoints {
					if !hasPort(svc, ep.Port) {
						t.Errorf("ServiceMonitor %s: Service %s has no port %q", m.Name, svc.Name, ep.Port)
					}
				}
			}
		}
		if !found {
			t.Errorf("ServiceMonitor %s selects no rendered Service", m.Name)
		}
	}
}

func hasPort(svc *corev1.Service, name string) bool {
	for _, p := range svc.Spec.Ports {
		if name != "" && p.Name == name {
			return true
		}
	}
	return false
}

func selects(t *testing.T, what string, sel *metav1.LabelSelector, podLabels map[string]string) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() || !s.Matches(labels.Set(podLabels)) {
		t.Errorf("%s: selector %v does not select its pods (labels %v): %v", what, sel, podLabels, err)
	}
}

// pod checks a pod template: every mount has a volume, Secrets are mode
// 0400, images and resources are set, and each daemon's configuration file
// (a ConfigMap key named by DAMSELFLY_CONFIG) is accepted by that daemon.
func pod(t *testing.T, r *rendered, what string, spec *corev1.PodSpec, claims map[string]bool) {
	t.Helper()
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
		if v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o400) {
			t.Errorf("%s: Secret volume %s is not mode 0400 (token files others can read are refused)", what, v.Name)
		}
		if v.ConfigMap != nil {
			if _, ok := r.configMaps[v.ConfigMap.Name]; !ok {
				t.Errorf("%s: volume %s names ConfigMap %q, not rendered", what, v.Name, v.ConfigMap.Name)
			}
		}
	}
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		if c.Image == "" || strings.HasSuffix(c.Image, ":") {
			t.Errorf("%s: container %s has no image tag: %q", what, c.Name, c.Image)
		}
		mounts := map[string]string{}
		for _, m := range c.VolumeMounts {
			if _, ok := volumes[m.Name]; !ok && !claims[m.Name] {
				t.Errorf("%s: container %s mounts %q, which is no volume", what, c.Name, m.Name)
			}
			mounts[m.MountPath] = m.Name
		}
		for _, e := range c.Env {
			if e.Name != "DAMSELFLY_CONFIG" {
				continue
			}
			dir, key := filepath.Split(e.Value)
			v, ok := volumes[mounts[filepath.Clean(dir)]]
			if !ok || v.ConfigMap == nil {
				t.Errorf("%s: container %s: DAMSELFLY_CONFIG %s is not in a mounted ConfigMap", what, c.Name, e.Value)
				continue
			}
			data, ok := r.configMaps[v.ConfigMap.Name].Data[key]
			if !ok {
				t.Errorf("%s: container %s: ConfigMap %s has no key %s", what, c.Name, v.ConfigMap.Name, key)
				continue
			}
			daemonAccepts(t, c.Command[0], data)
		}
		if c.Name != "containerd-hosts" && c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: container %s has no memory limit", what, c.Name)
		}
	}
}

// daemonAccepts runs the daemon with the configuration and --print-config.
func daemonAccepts(t *testing.T, daemon, config string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), daemon+".yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bins, daemon), "--config", path, "--print-config")
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("%s refuses its rendered configuration: %v\n%s\nconfiguration:\n%s", daemon, err, out, config)
	}
}
