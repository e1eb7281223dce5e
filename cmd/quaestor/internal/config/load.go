package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
	yamlv3 "go.yaml.in/yaml/v3"
)

// EnvPrefix starts the environment variables that set config keys:
// QUAESTOR_PROXY_LISTEN sets proxy.listen, QUAESTOR_PROXY_MAX_MESSAGE_SIZE
// sets proxy.max_message_size.
const EnvPrefix = "QUAESTOR_"

// Source says where the configuration comes from.
type Source struct {
	// Path is the YAML file. Empty: defaults only.
	Path string
	// Environ is the environment, as os.Environ returns it; variables
	// starting with EnvPrefix override the file.
	Environ []string
	// Overrides are "key=value" settings from the command line (--set),
	// applied last. The value is read as YAML: 5s, 1024, [a, b].
	Overrides []string
	// Warn, when set, is told of EnvPrefix variables that name no key,
	// which are then ignored (another program's variable, or a typo worth
	// a warning); when nil, they are errors.
	Warn func(msg string)
}

// Load reads the configuration from src onto the defaults and validates
// it. Every error names the source and the key.
func Load(src Source) (Config, error) {
	known := knownKeys(reflect.TypeFor[Config](), "")
	k := koanf.New(".")
	if src.Path != "" {
		if _, err := os.Stat(src.Path); err != nil {
			return Config{}, fmt.Errorf("config: reading %s: %w", src.Path, err)
		}
		if err := k.Load(file.Provider(src.Path), yaml.Parser()); err != nil {
			return Config{}, fmt.Errorf("config: parsing %s: %w", src.Path, err)
		}
		if err := checkKeys(k, known); err != nil {
			return Config{}, fmt.Errorf("config: %s: %w", src.Path, err)
		}
	}
	env, err := envOverrides(src.Environ, known, src.Warn)
	if err != nil {
		return Config{}, err
	}
	if err := k.Load(confmap.Provider(env, "."), nil); err != nil {
		return Config{}, fmt.Errorf("config: environment: %w", err)
	}
	sets, err := parseOverrides(src.Overrides, known)
	if err != nil {
		return Config{}, err
	}
	if err := k.Load(confmap.Provider(sets, "."), nil); err != nil {
		return Config{}, fmt.Errorf("config: --set: %w", err)
	}

	cfg := Default()
	err = k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{DecoderConfig: &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.TextUnmarshallerHookFunc()),
		WeaklyTypedInput: true,
		ErrorUnused:      true,
		TagName:          "koanf",
	}})
	if err != nil {
		return Config{}, fmt.Errorf("config%s: %w", inFile(src.Path), decodeError(err, k))
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("config%s: %w", inFile(src.Path), err)
	}
	return cfg, nil
}

func inFile(path string) string {
	if path == "" {
		return ""
	}
	return " " + path
}

// knownKeys lists the dotted keys of t's koanf-tagged fields: structs are
// walked into, anything else (lists included) is a leaf.
func knownKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("koanf")
		if tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		if f.Type.Kind() == reflect.Struct && f.Type.String() != "time.Duration" {
			keys = append(keys, knownKeys(f.Type, key+".")...)
			continue
		}
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return keys
}

// checkKeys reports a key in the file that no component declares, with the
// keys of its section that would be right.
func checkKeys(k *koanf.Koanf, known []string) error {
	for _, key := range k.Keys() {
		if slices.Contains(known, key) {
			continue
		}
		return fmt.Errorf("%w %q%s", errUnknownKey, key, didYouMean(key, known))
	}
	return nil
}

func didYouMean(key string, known []string) string {
	section, _, _ := strings.Cut(key, ".")
	var siblings []string
	for _, k := range known {
		if strings.HasPrefix(k, section+".") || k == section {
			siblings = append(siblings, k)
		}
	}
	if len(siblings) == 0 {
		sections := map[string]bool{}
		for _, k := range known {
			s, _, _ := strings.Cut(k, ".")
			sections[s] = true
		}
		var names []string
		for s := range sections {
			names = append(names, s)
		}
		slices.Sort(names)
		return " (known sections: " + keyList(names) + ")"
	}
	return " (known keys: " + keyList(siblings) + ")"
}

// envOverrides maps QUAESTOR_ variables onto keys by their names with dots
// and underscores alike: QUAESTOR_PROXY_MAX_MESSAGE_SIZE is
// proxy.max_message_size, found among the known keys, so keys with
// underscores are never ambiguous.
func envOverrides(environ []string, known []string, warn func(string)) (map[string]any, error) {
	byEnvName := make(map[string]string, len(known))
	for _, key := range known {
		byEnvName[EnvPrefix+strings.ToUpper(strings.ReplaceAll(key, ".", "_"))] = key
	}
	out := make(map[string]any)
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		key, ok := byEnvName[name]
		if !ok {
			err := fmt.Errorf("config: environment variable %s: %w (variables are %s followed by a key in capitals, dots as underscores, e.g. %sPROXY_LISTEN)",
				name, errUnknownKey, EnvPrefix, EnvPrefix)
			if warn == nil {
				return nil, err
			}
			warn(err.Error() + "; ignored")
			continue
		}
		v, err := parseValue(value)
		if err != nil {
			return nil, fmt.Errorf("config: environment variable %s: %w", name, err)
		}
		out[key] = v
	}
	return out, nil
}

// parseOverrides reads --set key=value settings.
func parseOverrides(sets []string, known []string) (map[string]any, error) {
	out := make(map[string]any)
	for _, set := range sets {
		key, value, ok := strings.Cut(set, "=")
		if !ok || key == "" {
			return nil, fmt.Errorf("config: --set %q: want key=value", set)
		}
		if !slices.Contains(known, key) {
			return nil, fmt.Errorf("config: --set %q: %w %q%s", set, errUnknownKey, key, didYouMean(key, known))
		}
		v, err := parseValue(value)
		if err != nil {
			return nil, fmt.Errorf("config: --set %q: %w", set, err)
		}
		out[key] = v
	}
	return out, nil
}

// parseValue reads a value as YAML, so that lists and numbers keep their
// type; a plain word stays a string.
func parseValue(s string) (any, error) {
	var v any
	if err := yamlv3.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("value %q is not valid YAML: %w", s, err)
	}
	if v == nil {
		return s, nil
	}
	return v, nil
}

// decodeError puts mapstructure's report on one line, each problem with
// the value that caused it: "proxy.drain_timeout: value "soon": time:
// invalid duration".
func decodeError(err error, k *koanf.Koanf) error {
	var problems []string
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "decoding failed") {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "'"); ok {
			if key, why, ok := strings.Cut(rest, "'"); ok {
				line = key + ":" + why
				if k.Exists(key) {
					line = fmt.Sprintf("%s: value %q:%s", key, fmt.Sprint(k.Get(key)), why)
				}
			}
		}
		problems = append(problems, line)
	}
	return errors.New(strings.Join(problems, "; "))
}
