// Package olm checks the OLM bundle that `make bundle` writes to bundle/: that
// operator-framework's validators accept it without a warning, that the console
// descriptors cover and match the CRD schema, that alm-examples pass the CRD's
// validation as the API server would run it, and that the operator's install
// settings (install modes, Deployment, RBAC) are the ones the project documents.
package olm

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/operator-framework/api/pkg/manifests"
	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
	"github.com/operator-framework/api/pkg/validation"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

const (
	bundleDir = "../../bundle"
	// packageName is the OLM package, also the CSV's name prefix.
	packageName = "openbao-operator"
	// defaultK8sVersion is the Kubernetes version the deprecated-API checks run
	// against when BUNDLE_K8S_VERSION is unset; `make test-bundle` passes the
	// Makefile's KUBE_VERSION, the version the project tests on.
	defaultK8sVersion = "1.35.4"
	descriptorPrefix  = "urn:alm:descriptor:"
)

func loadBundle(t *testing.T) *manifests.Bundle {
	t.Helper()
	b, err := manifests.GetBundleFromDir(bundleDir)
	if err != nil {
		t.Fatalf("load bundle %s (run 'make bundle'): %v", bundleDir, err)
	}
	if b.CSV == nil {
		t.Fatalf("bundle %s has no ClusterServiceVersion", bundleDir)
	}
	return b
}

// TestBundleValidators runs the validators OperatorHub and `operator-sdk bundle
// validate --select-optional suite=operatorframework` run, from the current
// operator-framework/api: any error or warning fails.
func TestBundleValidators(t *testing.T) {
	b := loadBundle(t)
	if b.Package != packageName {
		t.Errorf("annotations.yaml package = %q, want %q", b.Package, packageName)
	}
	if b.DefaultChannel == "" || !slices.Contains(b.Channels, b.DefaultChannel) {
		t.Errorf("default channel %q is not one of the channels %v", b.DefaultChannel, b.Channels)
	}

	k8sVersion := os.Getenv("BUNDLE_K8S_VERSION")
	if k8sVersion == "" {
		k8sVersion = defaultK8sVersion
	}
	validators := validation.DefaultBundleValidators.WithValidators(
		validation.OperatorHubV2Validator,
		validation.StandardCapabilitiesValidator,
		validation.StandardCategoriesValidator,
		validation.GoodPracticesValidator,
		validation.AlphaDeprecatedAPIsValidator,
		validation.ObjectValidator,
	)
	// The validators act only on objects of their own type: give them the bundle
	// itself and every object in it, plus the optional values they read.
	objs := append(b.ObjectsToValidate(), map[string]string{"k8s-version": k8sVersion})

	ran := 0
	for _, result := range validators.Validate(objs...) {
		ran++
		for _, e := range result.Errors {
			t.Errorf("%s %q: %s: %s", e.Level, result.Name, e.Type, e.Detail)
		}
		for _, w := range result.Warnings {
			t.Errorf("%s %q: %s: %s", w.Level, result.Name, w.Type, w.Detail)
		}
	}
	if ran == 0 {
		t.Fatal("no validator produced a result: the bundle objects were not recognized")
	}
}

// TestBundleDockerfileLabelsMatchAnnotations: a bundle image's labels are what
// a catalog reads; they must say what metadata/annotations.yaml says.
func TestBundleDockerfileLabelsMatchAnnotations(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(bundleDir, "metadata", "annotations.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var annotations struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := yaml.UnmarshalStrict(raw, &annotations); err != nil {
		t.Fatalf("annotations.yaml: %v", err)
	}

	f, err := os.Open(filepath.Join(bundleDir, "..", "bundle.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	labels := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "LABEL "); ok {
			k, v, found := strings.Cut(rest, "=")
			if !found {
				t.Fatalf("bundle.Dockerfile: cannot read label line %q", line)
			}
			labels[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(annotations.Annotations) == 0 {
		t.Fatal("annotations.yaml has no annotations")
	}
	for k, v := range annotations.Annotations {
		if labels[k] != v {
			t.Errorf("bundle.Dockerfile label %s = %q, annotations.yaml says %q", k, labels[k], v)
		}
	}
	for k := range labels {
		if _, ok := annotations.Annotations[k]; !ok {
			t.Errorf("bundle.Dockerfile label %s is not in annotations.yaml", k)
		}
	}
	for _, k := range []string{
		"operators.operatorframework.io.bundle.package.v1",
		"operators.operatorframework.io.bundle.channels.v1",
		"operators.operatorframework.io.bundle.channel.default.v1",
		"operators.operatorframework.io.test.config.v1",
	} {
		if annotations.Annotations[k] == "" {
			t.Errorf("annotations.yaml lacks %s", k)
		}
	}
	if _, err := os.Stat(filepath.Join(bundleDir, "tests", "scorecard", "config.yaml")); err != nil {
		t.Errorf("the bundle has no scorecard configuration: %v", err)
	}
}

// crdFor returns the bundle's CRD of an owned CRD description.
func crdFor(t *testing.T, b *manifests.Bundle, owned operatorsv1alpha1.CRDDescription) (*apiextensionsv1.CustomResourceDefinition, *apiextensionsv1.JSONSchemaProps) {
	t.Helper()
	for _, crd := range b.V1CRDs {
		if crd.Name != owned.Name {
			continue
		}
		for _, v := range crd.Spec.Versions {
			if v.Name == owned.Version {
				if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
					t.Fatalf("CRD %s %s has no schema", crd.Name, v.Name)
				}
				return crd, v.Schema.OpenAPIV3Schema
			}
		}
		t.Fatalf("CRD %s has no version %s", crd.Name, owned.Version)
	}
	t.Fatalf("the CSV owns %s, which the bundle does not contain", owned.Name)
	return nil, nil
}

// schemaAt resolves a descriptor path ("upgrade.blueGreen.verificationPeriod",
// "members[0].pod") below a schema.
func schemaAt(root *apiextensionsv1.JSONSchemaProps, path string) (*apiextensionsv1.JSONSchemaProps, error) {
	s := root
	for _, part := range strings.Split(path, ".") {
		name, index, isItem := strings.Cut(part, "[")
		p, ok := s.Properties[name]
		if !ok {
			return nil, fmt.Errorf("%s: no field %q", path, name)
		}
		s = &p
		if isItem {
			if _, err := strconv.Atoi(strings.TrimSuffix(index, "]")); err != nil || !strings.HasSuffix(index, "]") {
				return nil, fmt.Errorf("%s: bad index in %q", path, part)
			}
			if s.Type != "array" || s.Items == nil || s.Items.Schema == nil {
				return nil, fmt.Errorf("%s: %q is not an array", path, name)
			}
			s = s.Items.Schema
		}
	}
	return s, nil
}

// userFields lists the fields of a spec schema a user sets: every property,
// and the properties of nested objects. The items of arrays are not listed:
// the console builds array item forms from the schema and descriptor paths
// of array items are index-specific.
func userFields(s *apiextensionsv1.JSONSchemaProps, prefix string) []string {
	names := make([]string, 0, len(s.Properties))
	for name := range s.Properties {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []string
	for _, name := range names {
		p := s.Properties[name]
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		out = append(out, path)
		if p.Type == "object" && len(p.Properties) > 0 {
			out = append(out, userFields(&p, path)...)
		}
	}
	return out
}

// subtreeWidgets render a whole object, so its children need no descriptor.
var subtreeWidgets = []string{
	descriptorPrefix + "com.tectonic.ui:resourceRequirements",
	descriptorPrefix + "com.tectonic.ui:hidden",
}

func hasAny(xs []string, want ...string) bool {
	for _, w := range want {
		if slices.Contains(xs, w) {
			return true
		}
	}
	return false
}

// TestSpecDescriptorsCoverEveryField fails when a field a user can set has no
// specDescriptor, so that a new API field cannot ship without its console form
// entry. Descriptors come from the +operator-sdk:csv markers of the API types.
func TestSpecDescriptorsCoverEveryField(t *testing.T) {
	b := loadBundle(t)
	if len(b.CSV.Spec.CustomResourceDefinitions.Owned) == 0 {
		t.Fatal("the CSV owns no CRD")
	}
	for _, owned := range b.CSV.Spec.CustomResourceDefinitions.Owned {
		_, root := crdFor(t, b, owned)
		spec, ok := root.Properties["spec"]
		if !ok {
			t.Fatalf("%s has no spec", owned.Name)
		}
		byPath := map[string]operatorsv1alpha1.SpecDescriptor{}
		for _, d := range owned.SpecDescriptors {
			byPath[d.Path] = d
		}
		fields := userFields(&spec, "")
		if len(fields) == 0 {
			t.Fatalf("%s: the spec schema has no fields", owned.Name)
		}
	fields:
		for _, path := range fields {
			if _, ok := byPath[path]; ok {
				continue
			}
			for parent := path; strings.Contains(parent, "."); {
				parent = parent[:strings.LastIndex(parent, ".")]
				if d, ok := byPath[parent]; ok && hasAny(d.XDescriptors, subtreeWidgets...) {
					continue fields
				}
			}
			t.Errorf("%s: spec.%s has no specDescriptor: add an +operator-sdk:csv:customresourcedefinitions:type=spec marker to the field and run 'make bundle'", owned.Name, path)
		}
	}
}

// widget checks one x-descriptor against the schema of the field it is on.
// It returns an empty string when the pair is fine.
func widget(x string, field *apiextensionsv1.JSONSchemaProps, spec *apiextensionsv1.JSONSchemaProps, status bool) string {
	isString := field.Type == "string" || field.XIntOrString
	ui, ok := strings.CutPrefix(x, descriptorPrefix)
	if !ok {
		return fmt.Sprintf("%q does not start with %s", x, descriptorPrefix)
	}
	switch {
	case ui == "com.tectonic.ui:text", ui == "com.tectonic.ui:password":
		if !isString && field.Type != "integer" {
			return fmt.Sprintf("%s on a %s field", ui, field.Type)
		}
	case ui == "com.tectonic.ui:number", ui == "com.tectonic.ui:podCount":
		if field.Type != "integer" && field.Type != "number" {
			return fmt.Sprintf("%s on a %s field", ui, field.Type)
		}
	case ui == "com.tectonic.ui:booleanSwitch", ui == "com.tectonic.ui:checkbox":
		if field.Type != "boolean" {
			return fmt.Sprintf("%s on a %s field", ui, field.Type)
		}
	case ui == "com.tectonic.ui:resourceRequirements":
		if _, ok := field.Properties["limits"]; !ok {
			return "resourceRequirements on a field without limits/requests"
		}
	case ui == "com.tectonic.ui:advanced", ui == "com.tectonic.ui:hidden":
	case strings.HasPrefix(ui, "com.tectonic.ui:select:"):
		if field.Type != "string" || len(allowedValues(field)) == 0 {
			return "select on a field without an enum or a `self in [...]` rule"
		}
	case strings.HasPrefix(ui, "com.tectonic.ui:fieldDependency:"):
		dep := strings.TrimPrefix(ui, "com.tectonic.ui:fieldDependency:")
		i := strings.LastIndex(dep, ":")
		if i < 0 {
			return "fieldDependency needs <path>:<value>"
		}
		ctl, err := schemaAt(spec, dep[:i])
		if err != nil {
			return "fieldDependency on a field that does not exist: " + err.Error()
		}
		if ctl.Type == "boolean" && dep[i+1:] != "true" && dep[i+1:] != "false" {
			return "fieldDependency on a boolean with value " + dep[i+1:]
		}
	case strings.HasPrefix(ui, "com.tectonic.ui:fieldGroup:"), strings.HasPrefix(ui, "com.tectonic.ui:arrayFieldGroup:"):
		return ui + " is deprecated: nested objects group their fields by themselves"
	case strings.HasPrefix(ui, "io.kubernetes:"):
		if field.Type != "string" {
			return fmt.Sprintf("%s (an object reference by name) on a %s field", ui, field.Type)
		}
	case status && ui == "io.kubernetes.conditions":
		if field.Type != "array" {
			return "conditions on a non-array field"
		}
	case status && ui == "io.kubernetes.phase":
		if field.Type != "string" {
			return "phase on a non-string field"
		}
	case status && (ui == "com.tectonic.ui:podStatuses" || ui == "org.w3:link" || ui == "io.kubernetes.phase:reason"):
	default:
		return fmt.Sprintf("%q is not a console descriptor this project uses (typo?)", x)
	}
	return ""
}

// inRule is a CEL rule that lists a string field's values: self in ['a', 'b'].
var inRule = regexp.MustCompile(`^self in \[('[^']*'(?:, *'[^']*')*)\]$`)

// allowedValues are the values a string field accepts: its enum, or the list of a
// `self in [...]` rule (used instead of an enum where an enum mismatch would hide every
// other rule's message).
func allowedValues(field *apiextensionsv1.JSONSchemaProps) []string {
	var values []string
	for _, e := range field.Enum {
		var s string
		if err := json.Unmarshal(e.Raw, &s); err == nil {
			values = append(values, s)
		}
	}
	for _, r := range field.XValidations {
		if m := inRule.FindStringSubmatch(r.Rule); m != nil {
			for _, v := range strings.Split(m[1], ",") {
				values = append(values, strings.Trim(strings.TrimSpace(v), "'"))
			}
		}
	}
	sort.Strings(values)
	return values
}

// TestDescriptorsMatchSchema: every descriptor names a field that exists, with
// an x-descriptor that fits its type; select options are exactly the enum (or the values of a `self in [...]` rule).
func TestDescriptorsMatchSchema(t *testing.T) {
	b := loadBundle(t)
	for _, owned := range b.CSV.Spec.CustomResourceDefinitions.Owned {
		_, root := crdFor(t, b, owned)
		spec, status := root.Properties["spec"], root.Properties["status"]
		if owned.DisplayName == "" || owned.Description == "" {
			t.Errorf("%s: the CRD description needs a displayName and a description", owned.Name)
		}
		check := func(kind string, base *apiextensionsv1.JSONSchemaProps, path, displayName, description string, xs []string) {
			field, err := schemaAt(base, path)
			if err != nil {
				t.Errorf("%s: %sDescriptor %s", owned.Name, kind, err)
				return
			}
			if displayName == "" || description == "" {
				t.Errorf("%s: %sDescriptor %s needs a displayName and a description", owned.Name, kind, path)
			}
			var options []string
			for _, x := range xs {
				if msg := widget(x, field, &spec, kind == "status"); msg != "" {
					t.Errorf("%s: %sDescriptor %s: %s", owned.Name, kind, path, msg)
				}
				if opt, ok := strings.CutPrefix(x, descriptorPrefix+"com.tectonic.ui:select:"); ok {
					options = append(options, opt)
				}
			}
			if len(options) > 0 {
				enum := allowedValues(field)
				sort.Strings(options)
				sort.Strings(enum)
				if !slices.Equal(options, enum) {
					t.Errorf("%s: %sDescriptor %s offers %v, the schema allows %v", owned.Name, kind, path, options, enum)
				}
			}
		}
		seen := map[string]bool{}
		for _, d := range owned.SpecDescriptors {
			if seen["spec."+d.Path] {
				t.Errorf("%s: two specDescriptors for %s", owned.Name, d.Path)
			}
			seen["spec."+d.Path] = true
			check("spec", &spec, d.Path, d.DisplayName, d.Description, d.XDescriptors)
		}
		for _, d := range owned.StatusDescriptors {
			if seen["status."+d.Path] {
				t.Errorf("%s: two statusDescriptors for %s", owned.Name, d.Path)
			}
			seen["status."+d.Path] = true
			check("status", &status, d.Path, d.DisplayName, d.Description, d.XDescriptors)
		}
	}
}

// TestConsoleWidgets pins the widgets of the fields people use most, as the
// console form and the details page show them.
func TestConsoleWidgets(t *testing.T) {
	b := loadBundle(t)
	owned := ownedCRD(t, b, "OpenBaoCluster")
	specX := map[string][]string{}
	for _, d := range owned.SpecDescriptors {
		specX[d.Path] = d.XDescriptors
	}
	statusX := map[string][]string{}
	for _, d := range owned.StatusDescriptors {
		statusX[d.Path] = d.XDescriptors
	}
	ui := func(s string) string { return descriptorPrefix + "com.tectonic.ui:" + s }
	for path, want := range map[string][]string{
		"version":                    {ui("text")},
		"image":                      {ui("text"), ui("advanced")},
		"replicas":                   {ui("podCount")},
		"paused":                     {ui("booleanSwitch")},
		"upgrade.strategy":           {ui("select:Rolling"), ui("select:BlueGreen")},
		"upgrade.preUpgradeSnapshot": {ui("booleanSwitch")},
		"upgrade.allowDowngrade":     {ui("booleanSwitch"), ui("advanced")},
		"upgrade.executorImage":      {ui("text"), ui("advanced")},
		"upgrade.jwtAuthRole":        {ui("text"), ui("advanced")},
		"upgrade.stepTimeout":        {ui("text"), ui("advanced")},
		"resources":                  {ui("resourceRequirements")},
		"tls":                        {ui("advanced")},
		"selfInit":                   {ui("advanced")},
	} {
		got, ok := specX[path]
		if !ok {
			t.Errorf("no specDescriptor for spec.%s", path)
			continue
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("spec.%s: x-descriptors %v lack %s", path, got, w)
			}
		}
	}
	for path, want := range map[string]string{
		"phase":          descriptorPrefix + "io.kubernetes.phase",
		"conditions":     descriptorPrefix + "io.kubernetes.conditions",
		"currentVersion": ui("text"),
		"upgrade":        "",
		"upgrade.step":   ui("text"),
	} {
		got, ok := statusX[path]
		if !ok {
			t.Errorf("no statusDescriptor for status.%s", path)
			continue
		}
		if want != "" && !slices.Contains(got, want) {
			t.Errorf("status.%s: x-descriptors %v lack %s", path, got, want)
		}
	}
}

// TestDescriptionNamesRealFields: the CSV description tells people which
// fields to set (spec.paused, spec.upgrade.strategy, ...); every such path must
// exist in the CRD, so a renamed field cannot leave the documentation behind.
func TestDescriptionNamesRealFields(t *testing.T) {
	b := loadBundle(t)
	owned := ownedCRD(t, b, "OpenBaoCluster")
	_, root := crdFor(t, b, owned)
	paths := regexp.MustCompile(`\b(spec|status)(\.[a-zA-Z][a-zA-Z0-9]*)+`).FindAllString(b.CSV.Spec.Description, -1)
	if len(paths) < 5 {
		t.Fatalf("the CSV description names only %d fields (%v): the test is not reading it", len(paths), paths)
	}
	for _, p := range paths {
		if _, err := schemaAt(root, p); err != nil {
			t.Errorf("the CSV description names %s: %v", p, err)
		}
	}
}

func ownedCRD(t *testing.T, b *manifests.Bundle, kind string) operatorsv1alpha1.CRDDescription {
	t.Helper()
	for _, o := range b.CSV.Spec.CustomResourceDefinitions.Owned {
		if o.Kind == kind {
			return o
		}
	}
	t.Fatalf("the CSV does not own %s", kind)
	return operatorsv1alpha1.CRDDescription{}
}

// validateAsAPIServer runs what the API server runs on a create: pruning of
// unknown fields (reported, where the server would drop them silently),
// defaulting, OpenAPI schema validation and the CRD's CEL rules.
func validateAsAPIServer(crdSchema *apiextensionsv1.JSONSchemaProps, obj map[string]any) ([]string, error) {
	var internal apiextensions.JSONSchemaProps
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(crdSchema, &internal, nil); err != nil {
		return nil, fmt.Errorf("convert schema: %w", err)
	}
	structural, err := structuralschema.NewStructural(&internal)
	if err != nil {
		return nil, fmt.Errorf("structural schema: %w", err)
	}
	var problems []string
	for _, p := range pruning.PruneWithOptions(obj, structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}) {
		problems = append(problems, "unknown field "+p)
	}
	defaulting.Default(obj, structural)
	validator, _, err := apiservervalidation.NewSchemaValidator(&internal)
	if err != nil {
		return nil, fmt.Errorf("schema validator: %w", err)
	}
	for _, e := range apiservervalidation.ValidateCustomResource(nil, obj, validator) {
		problems = append(problems, e.Error())
	}
	celValidator := cel.NewValidator(structural, true, celconfig.PerCallLimit)
	if celValidator == nil {
		return nil, fmt.Errorf("the CRD has no CEL rules to run, yet this project's CRD has them")
	}
	celErrs, _ := celValidator.Validate(context.Background(), nil, structural, obj, nil, celconfig.RuntimeCELCostBudget)
	for _, e := range celErrs {
		problems = append(problems, e.Error())
	}
	return problems, nil
}

func almExamples(t *testing.T, csv *operatorsv1alpha1.ClusterServiceVersion) []map[string]any {
	t.Helper()
	raw, ok := csv.Annotations["alm-examples"]
	if !ok {
		t.Fatal("the CSV has no alm-examples annotation")
	}
	// Decode as the API server does: integers become int64, not float64.
	var examples []map[string]any
	if err := utiljson.Unmarshal([]byte(raw), &examples); err != nil {
		t.Fatalf("alm-examples is not a JSON list of objects: %v", err)
	}
	return examples
}

// TestALMExamplesPassCRDValidation: the example the console pre-fills must be
// accepted by the API server, and every owned kind needs one.
func TestALMExamplesPassCRDValidation(t *testing.T) {
	b := loadBundle(t)
	examples := almExamples(t, b.CSV)
	covered := map[string]bool{}
	for i, ex := range examples {
		gv, err := schema.ParseGroupVersion(fmt.Sprint(ex["apiVersion"]))
		if err != nil {
			t.Errorf("alm-examples[%d]: %v", i, err)
			continue
		}
		kind := fmt.Sprint(ex["kind"])
		var owned *operatorsv1alpha1.CRDDescription
		for j, o := range b.CSV.Spec.CustomResourceDefinitions.Owned {
			if o.Kind == kind && o.Version == gv.Version && strings.HasSuffix(o.Name, "."+gv.Group) {
				owned = &b.CSV.Spec.CustomResourceDefinitions.Owned[j]
			}
		}
		if owned == nil {
			t.Errorf("alm-examples[%d] is a %s %s, which the CSV does not own", i, gv, kind)
			continue
		}
		covered[owned.Name] = true
		_, crdSchema := crdFor(t, b, *owned)
		problems, err := validateAsAPIServer(crdSchema, ex)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("alm-examples[%d] (%s): %s", i, kind, p)
		}
	}
	for _, o := range b.CSV.Spec.CustomResourceDefinitions.Owned {
		if !covered[o.Name] {
			t.Errorf("alm-examples has no example of %s: add one to config/samples", o.Name)
		}
	}
}

// TestCRDValidationRejectsBrokenExamples proves that the validation above can
// fail: each broken variant of the sample must be rejected.
func TestCRDValidationRejectsBrokenExamples(t *testing.T) {
	b := loadBundle(t)
	examples := almExamples(t, b.CSV)
	if len(examples) == 0 {
		t.Fatal("alm-examples is empty")
	}
	owned := ownedCRD(t, b, "OpenBaoCluster")
	_, crdSchema := crdFor(t, b, owned)
	for name, breakIt := range map[string]func(spec map[string]any){
		"even replicas (CEL)":   func(s map[string]any) { s["replicas"] = int64(2) },
		"strategy not in enum":  func(s map[string]any) { s["upgrade"] = map[string]any{"strategy": "Canary"} },
		"version not semantic":  func(s map[string]any) { s["version"] = "latest" },
		"unknown field":         func(s map[string]any) { s["replica"] = int64(3) },
		"replicas out of range": func(s map[string]any) { s["replicas"] = int64(11) },
	} {
		t.Run(name, func(t *testing.T) {
			var ex map[string]any
			raw, _ := json.Marshal(examples[0])
			if err := utiljson.Unmarshal(raw, &ex); err != nil {
				t.Fatal(err)
			}
			spec, ok := ex["spec"].(map[string]any)
			if !ok {
				t.Fatal("the first alm-example has no spec")
			}
			breakIt(spec)
			problems, err := validateAsAPIServer(crdSchema, ex)
			if err != nil {
				t.Fatal(err)
			}
			if len(problems) == 0 {
				t.Errorf("a sample with %s passed validation", name)
			}
		})
	}
}

// TestInstallSettings checks what OLM (and `make deploy`, built from the same
// config/) installs: honest install modes and capability level, a Deployment
// that runs under the "restricted" Pod Security Standard, with the environment
// the manager reads and probes on its health port, and RBAC from config/rbac.
func TestInstallSettings(t *testing.T) {
	b := loadBundle(t)
	csv := b.CSV

	modes := map[operatorsv1alpha1.InstallModeType]bool{}
	for _, m := range csv.Spec.InstallModes {
		modes[m.Type] = m.Supported
	}
	// The manager watches the namespaces of WATCH_NAMESPACE, which the
	// Deployment takes from OLM's olm.targetNamespaces annotation (checked in
	// checkPod), or all of them when it is empty: every install mode works.
	for mode, want := range map[operatorsv1alpha1.InstallModeType]bool{
		operatorsv1alpha1.InstallModeTypeAllNamespaces:   true,
		operatorsv1alpha1.InstallModeTypeOwnNamespace:    true,
		operatorsv1alpha1.InstallModeTypeSingleNamespace: true,
		operatorsv1alpha1.InstallModeTypeMultiNamespace:  true,
	} {
		if got, ok := modes[mode]; !ok || got != want {
			t.Errorf("install mode %s: supported=%v (declared %v), want %v", mode, got, ok, want)
		}
	}
	if got := csv.Annotations["capabilities"]; got != "Seamless Upgrades" {
		t.Errorf("capabilities = %q, want Seamless Upgrades (operand upgrades by changing the CR)", got)
	}
	if csv.Spec.MinKubeVersion == "" {
		t.Error("the CSV has no minKubeVersion")
	}
	for _, k := range []string{"createdAt", "containerImage", "description", "categories", "repository"} {
		if csv.Annotations[k] == "" {
			t.Errorf("the CSV lacks the %s annotation", k)
		}
	}
	for _, section := range []string{"## Upgrades", "## Pausing", "paused: true"} {
		if !strings.Contains(csv.Spec.Description, section) {
			t.Errorf("the CSV description lacks %q", section)
		}
	}
	if len(csv.Spec.Icon) == 0 || csv.Spec.Icon[0].Data == "" {
		t.Error("the CSV has no icon")
	}

	var strategy operatorsv1alpha1.StrategyDetailsDeployment = csv.Spec.InstallStrategy.StrategySpec
	if len(strategy.DeploymentSpecs) != 1 {
		t.Fatalf("the CSV installs %d Deployments, want 1", len(strategy.DeploymentSpecs))
	}
	dep := strategy.DeploymentSpecs[0]
	pod := dep.Spec.Template.Spec
	checkPod(t, dep.Name, pod)

	sa := pod.ServiceAccountName
	if sa == "" {
		t.Fatal("the Deployment names no ServiceAccount")
	}
	hasRule := func(perms []operatorsv1alpha1.StrategyDeploymentPermissions, group, resource, verb string) bool {
		for _, p := range perms {
			if p.ServiceAccountName != sa {
				continue
			}
			for _, r := range p.Rules {
				if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
					return true
				}
			}
		}
		return false
	}
	if !hasRule(strategy.Permissions, "coordination.k8s.io", "leases", "update") {
		t.Error("the CSV's namespaced permissions lack the leader-election Lease rule")
	}
	// OLM grants `permissions` in the target namespaces only (cluster-wide
	// for AllNamespaces): everything namespaced belongs there. Only the OIDC
	// discovery URLs, which no Role can grant, are cluster permissions.
	for _, r := range []struct{ group, resource, verb string }{
		{"openbao.org", "openbaoclusters", "watch"},
		{"openbao.org", "openbaoclusters/status", "patch"},
		{"apps", "statefulsets", "create"},
		{"", "secrets", "create"},
		{"", "pods", "delete"},
		{"batch", "jobs", "create"},
		{"", "events", "create"},
		{"", "events", "patch"},
	} {
		if !hasRule(strategy.Permissions, r.group, r.resource, r.verb) {
			t.Errorf("the CSV's namespaced permissions lack %s %s/%s", r.verb, r.group, r.resource)
		}
	}
	// Secrets are read by name, never listed or watched: RBAC cannot grant list or watch
	// by label, so either would let the operator read every Secret of the namespaces it
	// watches (of the whole cluster for AllNamespaces).
	for _, r := range []struct{ group, resource, verb string }{
		{"", "secrets", "list"},
		{"", "secrets", "watch"},
		{"", "secrets", "delete"},
	} {
		if hasRule(strategy.Permissions, r.group, r.resource, r.verb) || hasRule(strategy.ClusterPermissions, r.group, r.resource, r.verb) {
			t.Errorf("the CSV grants %s on %s: the operator reads Secrets by name only", r.verb, r.resource)
		}
	}
	var urls []string
	for _, p := range strategy.ClusterPermissions {
		for _, r := range p.Rules {
			if len(r.Resources) > 0 || len(r.APIGroups) > 0 {
				t.Errorf("cluster permission on resources %v of %v: namespaced rules belong to the CSV's permissions", r.Resources, r.APIGroups)
			}
			urls = append(urls, r.NonResourceURLs...)
		}
	}
	slices.Sort(urls)
	if want := []string{"/.well-known/openid-configuration", "/openid/v1/jwks"}; !slices.Equal(urls, want) {
		t.Errorf("cluster permissions cover the URLs %v, want exactly %v", urls, want)
	}
	for _, p := range strategy.Permissions {
		for _, r := range p.Rules {
			if len(r.NonResourceURLs) > 0 {
				t.Errorf("namespaced permission on URLs %v: OLM cannot grant them with a Role", r.NonResourceURLs)
			}
		}
	}
	for _, p := range append(strategy.Permissions, strategy.ClusterPermissions...) {
		if p.ServiceAccountName != sa {
			t.Errorf("permissions for ServiceAccount %q, which no Deployment uses", p.ServiceAccountName)
		}
		for _, r := range p.Rules {
			if slices.Contains(r.Verbs, "*") || slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*") {
				t.Errorf("wildcard rule %v: list what the operator needs", r)
			}
		}
	}
}

func checkPod(t *testing.T, name string, pod corev1.PodSpec) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: the pod must set runAsNonRoot", name)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: the pod must use the RuntimeDefault seccomp profile", name)
	}
	var manager *corev1.Container
	for i := range pod.Containers {
		c := &pod.Containers[i]
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, corev1.Capability("ALL")) || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s/%s: the container must drop ALL capabilities, forbid privilege escalation and run with a read-only root filesystem", name, c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s/%s: the container needs CPU and memory requests and a memory limit", name, c.Name)
		}
		if c.Name == "manager" {
			manager = c
		}
	}
	if manager == nil {
		t.Fatalf("%s has no container named manager", name)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range manager.Env {
		env[e.Name] = e
	}
	if e := env["OPERATOR_IMAGE"]; e.Value != manager.Image || manager.Image == "" {
		t.Errorf("OPERATOR_IMAGE = %q, the manager runs %q: upgrade Jobs would run another image", e.Value, manager.Image)
	}
	for name, fieldPath := range map[string]string{
		"POD_NAMESPACE":        "metadata.namespace",
		"SERVICE_ACCOUNT_NAME": "spec.serviceAccountName",
		"WATCH_NAMESPACE":      "metadata.annotations['olm.targetNamespaces']",
	} {
		e := env[name]
		if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != fieldPath {
			t.Errorf("%s must come from the downward API (%s)", name, fieldPath)
		}
	}
	for probeName, p := range map[string]*corev1.Probe{"liveness": manager.LivenessProbe, "readiness": manager.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("the manager has no HTTP %s probe", probeName)
			continue
		}
		port := p.HTTPGet.Port.IntValue()
		for _, cp := range manager.Ports {
			if cp.Name == p.HTTPGet.Port.String() {
				port = int(cp.ContainerPort)
			}
		}
		if port != 8081 {
			t.Errorf("the %s probe targets port %d, the manager serves probes on 8081", probeName, port)
		}
	}
	if !slices.Contains(manager.Args, "--leader-elect") {
		t.Error("the manager runs without --leader-elect")
	}
}

// TestConfigManifestsDecodeStrictly: operator-sdk decodes config/ into typed
// objects and silently drops a misspelt field, which `kubectl apply -k` would
// reject or ignore too. Every hand-written manifest must decode strictly.
func TestConfigManifestsDecodeStrictly(t *testing.T) {
	files, err := filepath.Glob("../../config/*/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	decoded := 0
	for _, file := range files {
		if strings.HasSuffix(file, "kustomization.yaml") {
			continue
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(raw), "\n---\n") {
			var meta struct {
				Kind string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Errorf("%s document %d: %v", file, i, err)
				continue
			}
			var obj any
			switch meta.Kind {
			case "Namespace":
				obj = &corev1.Namespace{}
			case "ServiceAccount":
				obj = &corev1.ServiceAccount{}
			case "Deployment":
				obj = &appsv1.Deployment{}
			case "Role":
				obj = &rbacv1.Role{}
			case "RoleBinding":
				obj = &rbacv1.RoleBinding{}
			case "ClusterRole":
				obj = &rbacv1.ClusterRole{}
			case "ClusterRoleBinding":
				obj = &rbacv1.ClusterRoleBinding{}
			default:
				continue
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Errorf("%s document %d (%s): %v", file, i, meta.Kind, err)
			}
			decoded++
		}
	}
	if decoded < 6 {
		t.Errorf("decoded only %d manifests under config/: the layout changed?", decoded)
	}
}
