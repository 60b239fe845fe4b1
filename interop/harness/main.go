// Command agent-harness runs one Session Manager session with the official amazon-ssm-agent's
// own session code: its data channel (handshake, acknowledgements, resends, KMS encryption)
// wrapped around one of its session plugins. It is what an instance would run for one
// StartSession, minus the control channel that would have told it to: the caller (the kit's
// relay, interop/relay.py) starts it with the session id and the document's properties.
//
// interop/build.sh copies this file into a checkout of amazon-ssm-agent as
// agent/sallyportharness/main.go and builds it there against the agent's vendored packages;
// it is not built as part of sallyport.
//
//	agent-harness -mgs https://127.0.0.1:PORT -session ID [-plugin port|shell|interactive|noninteractive] ...
//
// Run -h for the flags. Exit status: 0 when the plugin finished, 1 when it failed, 2 for bad
// flags, 3 when the parent process went away, 4 on a signal.
package main

import (
	"flag"
	"fmt"
	"hash/fnv"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/aws/amazon-ssm-agent/agent/appconfig"
	agentctx "github.com/aws/amazon-ssm-agent/agent/context"
	"github.com/aws/amazon-ssm-agent/agent/contracts"
	"github.com/aws/amazon-ssm-agent/agent/framework/processor/executer/iohandler"
	agentlog "github.com/aws/amazon-ssm-agent/agent/log"
	"github.com/aws/amazon-ssm-agent/agent/log/logger"
	"github.com/aws/amazon-ssm-agent/agent/session/plugins/interactivecommands"
	"github.com/aws/amazon-ssm-agent/agent/session/plugins/noninteractivecommands"
	"github.com/aws/amazon-ssm-agent/agent/session/plugins/port"
	"github.com/aws/amazon-ssm-agent/agent/session/plugins/sessionplugin"
	"github.com/aws/amazon-ssm-agent/agent/session/plugins/standardstream"
	"github.com/aws/amazon-ssm-agent/agent/task"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/cihub/seelog"
)

// options holds the command line.
type options struct {
	mgs, session, instance, region string
	plugin, claim                  string
	doc, portNumber, host, local   string
	commands, separate, runAs      string
	kmsKey, kmsEndpoint            string
	workDir, level                 string
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.mgs, "mgs", "", "Message Gateway base URL, https://HOST:PORT (required; the scheme matters: without one the agent dials AWS)")
	flag.StringVar(&o.session, "session", "", "session id (required)")
	flag.StringVar(&o.instance, "instance", "i-0123456789abcdef0", "instance id the agent claims")
	flag.StringVar(&o.region, "region", "us-east-1", "region the agent claims")
	flag.StringVar(&o.plugin, "plugin", "port", "session plugin: port (Port), shell (Standard_Stream), interactive (InteractiveCommands), noninteractive (NonInteractiveCommands)")
	flag.StringVar(&o.claim, "claim-plugin", "", "plugin name announced in the handshake (default: the plugin's own); the agent encrypts only non-Port sessions, so a Port session claiming InteractiveCommands carries its bytes through the agent's KMS code")
	flag.StringVar(&o.doc, "doc", "AWS-StartSSHSession", "port plugin: the document whose properties it gets")
	flag.StringVar(&o.portNumber, "port", "22", "port plugin: portNumber")
	flag.StringVar(&o.host, "host", "", "port plugin: host (AWS-StartPortForwardingSessionToRemoteHost)")
	flag.StringVar(&o.local, "localport", "0", "port plugin: localPortNumber (the client's listener; the agent does not use it)")
	flag.StringVar(&o.commands, "commands", "", "interactive/noninteractive plugins: the command line")
	flag.StringVar(&o.separate, "separate-output", "", "noninteractive plugin: separateOutputStream as a document would substitute it (\"true\"/\"false\"), empty for absent")
	flag.StringVar(&o.runAs, "run-as", "nobody", "shell plugins: existing non-root user to run as (the agent refuses root for RunAs)")
	flag.StringVar(&o.kmsKey, "kms-key-id", "", "encrypt the session with this KMS key id")
	flag.StringVar(&o.kmsEndpoint, "kms-endpoint", "", "KMS endpoint URL the agent sends Decrypt to")
	flag.StringVar(&o.workDir, "work-dir", filepath.Join(os.TempDir(), "sallyport-agent-harness"), "stands in for the agent's session files directory (mux sockets, shell logs)")
	flag.StringVar(&o.level, "log", "info", "log level: trace, debug, info, warn, error")
	flag.Parse()
	return o
}

func usageError(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "agent-harness: "+format+"\n", a...)
	os.Exit(2)
}

// portProperties is what MGS hands the Port plugin for each port document once the document's
// parameters are substituted (all values strings, as in the documents).
func portProperties(o options) map[string]interface{} {
	props := map[string]interface{}{"portNumber": o.portNumber}
	switch o.doc {
	case "AWS-StartSSHSession":
		return props
	case "AWS-StartPortForwardingSessionToRemoteHost":
		if o.host == "" {
			usageError("%s needs -host", o.doc)
		}
		props["host"] = o.host
	case "AWS-StartPortForwardingSession":
	default:
		usageError("-doc %q is not a port document this harness knows", o.doc)
	}
	props["type"] = "LocalPortForwarding"
	props["localPortNumber"] = o.local
	return props
}

// shellProperties is what the shell plugins get: per-platform settings under "linux".
func shellProperties(o options) map[string]interface{} {
	linux := map[string]interface{}{"commands": o.commands, "runAsElevated": false}
	if o.separate != "" {
		// a substituted document parameter is a string; the agent converts it to a bool itself
		linux["separateOutputStream"] = o.separate
	}
	return map[string]interface{}{"linux": linux}
}

// pick returns the plugin constructor, its agent name and its properties.
func pick(o options) (sessionplugin.NewPluginFunc, string, map[string]interface{}) {
	switch o.plugin {
	case "port":
		return port.NewPlugin, appconfig.PluginNamePort, portProperties(o)
	case "shell":
		return standardstream.NewPlugin, appconfig.PluginNameStandardStream, shellProperties(o)
	case "interactive":
		return interactivecommands.NewPlugin, appconfig.PluginNameInteractiveCommands, shellProperties(o)
	case "noninteractive":
		return noninteractivecommands.NewPlugin, appconfig.PluginNameNonInteractiveCommands, shellProperties(o)
	}
	usageError("-plugin must be port, shell, interactive or noninteractive, not %q", o.plugin)
	return nil, "", nil
}

// staticIdentity answers the agent's identity questions without instance metadata.
type staticIdentity struct{ id, region string }

func (s staticIdentity) InstanceID() (string, error)         { return s.id, nil }
func (s staticIdentity) ShortInstanceID() (string, error)    { return s.id, nil }
func (s staticIdentity) Region() (string, error)             { return s.region, nil }
func (s staticIdentity) AvailabilityZone() (string, error)   { return s.region + "a", nil }
func (s staticIdentity) AvailabilityZoneId() (string, error) { return "use1-az1", nil }
func (s staticIdentity) InstanceType() (string, error)       { return "t3.micro", nil }
func (s staticIdentity) IdentityType() string                { return "EC2" }
func (s staticIdentity) GetServiceEndpoint(string) string    { return "" }
func (s staticIdentity) Credentials() *credentials.Credentials {
	// the relay does not check signatures; the agent still signs its requests with these
	return credentials.NewStaticCredentials("AKIDHARNESS", "harness-secret", "")
}

// stderrLogger is the agent's logger writing to stderr at the given level.
func stderrLogger(level string) agentlog.T {
	lvl, ok := seelog.LogLevelFromString(level)
	if !ok {
		usageError("-log %q is not a level", level)
	}
	base, err := seelog.LoggerFromWriterWithMinLevelAndFormat(os.Stderr, lvl, "%Date(15:04:05.000) %LEVEL %Msg%n")
	if err != nil {
		usageError("logger: %v", err)
	}
	return &logger.Wrapper{
		Format:   &logger.ContextFormatFilter{Context: []string{}},
		M:        new(sync.RWMutex),
		Delegate: &logger.DelegateLogger{BaseLoggerInstance: base},
	}
}

// cleanupOnExit makes sure the harness never outlives its caller and removes the mux socket the
// Port plugin leaves behind when it is interrupted (its name: the plugin's getUnixSocketPath).
func cleanupOnExit(log agentlog.T, o options) {
	h := fnv.New32a()
	h.Write([]byte(o.session))
	sock := filepath.Join(o.workDir, fmt.Sprintf("%d_mux.sock", h.Sum32()))
	leave := func(code int, why string) {
		log.Infof("agent-harness: %s; exiting", why)
		log.Flush()
		os.Remove(sock)
		os.Exit(code)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() { leave(4, fmt.Sprintf("got %v", <-sigs)) }()
	parent := os.Getppid()
	go func() {
		for range time.Tick(500 * time.Millisecond) {
			if os.Getppid() != parent {
				leave(3, "parent went away")
			}
		}
	}()
}

func main() {
	o := parseFlags()
	if o.mgs == "" || o.session == "" {
		usageError("-mgs and -session are required (see -h)")
	}
	newPlugin, name, props := pick(o)
	log := stderrLogger(o.level)
	defer log.Flush()
	cleanupOnExit(log, o)

	appconfig.SessionFilesPath = o.workDir // the agent's /var/lib/amazon/ssm/session
	cfg := appconfig.DefaultConfig()
	cfg.Mgs.Region = o.region
	cfg.Mgs.Endpoint = o.mgs
	if o.kmsEndpoint != "" {
		cfg.Kms.Endpoint = o.kmsEndpoint
	}
	ctx := agentctx.Default(log, cfg, staticIdentity{o.instance, o.region}).With("[harness " + o.session + "]")

	plugin, err := sessionplugin.NewPlugin(ctx, newPlugin)
	if err != nil {
		log.Errorf("agent-harness: %s plugin: %v", name, err)
		log.Flush()
		os.Exit(1)
	}
	claim := o.claim
	if claim == "" {
		claim = name
	}
	orch := filepath.Join(o.workDir, "orchestration", o.session)
	if err := os.MkdirAll(orch, 0o755); err != nil { // the shell plugins log the session there
		usageError("%v", err)
	}
	conf := contracts.Configuration{
		SessionId:              o.session,
		ClientId:               "harness-client-" + o.session, // MGS's name for the client end
		PluginName:             claim,
		PluginID:               name,
		KmsKeyId:               o.kmsKey,
		Properties:             props,
		RunAsEnabled:           true, // so the shells never create ssm-user here
		RunAsUser:              o.runAs,
		OrchestrationDirectory: orch,
	}
	log.Infof("agent-harness: session %s, plugin %s (announced as %s), properties %v", o.session, name, claim, props)
	out := iohandler.NewDefaultIOHandler(ctx, contracts.IOConfiguration{})
	plugin.Execute(conf, task.NewChanneledCancelFlag(), out)
	log.Infof("agent-harness: session %s finished: %v, exit code %d", o.session, out.GetStatus(), out.GetExitCode())
	log.Flush()
	if out.GetStatus() == contracts.ResultStatusFailed {
		os.Exit(1)
	}
}
