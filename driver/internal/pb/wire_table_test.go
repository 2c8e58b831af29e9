// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package pb_test

// wireTable is the wire contract of Nomad's plugin protocol: the services,
// messages, field numbers and enums of Nomad's driver, device, base and
// statistics protocols (plugins/{base,drivers,device}/proto in Nomad's public
// source), written out by hand rather than generated, so that a mistake in
// our .proto files cannot also be in the expectation. It is the only
// expectation the wire test checks the generated descriptors against.
//
// Format: a header line per service/message/enum, then one indented line per
// member, in any order:
//
//	rpc /<package>.<Service>/<Method> <request> <response> <streaming kind>
//	<number> <field name> <type> <label: - | repeated | map | oneof:<name>>
//	reserved <number> | reserved "<name>"
//	<enum value name> = <number>
//
// Types are scalar kinds or full names; maps are map<key,value>.
const wireTable = `
service hashicorp.nomad.plugins.base.proto.BasePlugin
  rpc /hashicorp.nomad.plugins.base.proto.BasePlugin/PluginInfo hashicorp.nomad.plugins.base.proto.PluginInfoRequest hashicorp.nomad.plugins.base.proto.PluginInfoResponse unary
  rpc /hashicorp.nomad.plugins.base.proto.BasePlugin/ConfigSchema hashicorp.nomad.plugins.base.proto.ConfigSchemaRequest hashicorp.nomad.plugins.base.proto.ConfigSchemaResponse unary
  rpc /hashicorp.nomad.plugins.base.proto.BasePlugin/SetConfig hashicorp.nomad.plugins.base.proto.SetConfigRequest hashicorp.nomad.plugins.base.proto.SetConfigResponse unary
service hashicorp.nomad.plugins.drivers.proto.Driver
  rpc /hashicorp.nomad.plugins.drivers.proto.Driver/Init hashicorp.nomad.plugins.drivers.proto.InitRequest hashicorp.nomad.plugins.drivers.proto.InitResponse unary
  rpc /hashicorp.nomad.plugins.drivers.proto.Driver/TaskConfigSchema hashicorp.nomad.plugins.drivers.proto.TaskConfigSchemaRequest hashicorp.nomad.plugins.drivers.proto.TaskConfigSchemaResponse unary
  rpc /hashicorp.nomad.plugins.drivers.proto.Driver/Capabilities hashicorp.nomad.plugins.drivers.proto.CapabilitiesRequest hashicorp.nomad.plugins.drivers.proto.CapabilitiesResponse unary
  rpc /hashicorp.nomad.plugins.drivers.proto.Driver/Fingerprint hashicorp.nomad.plugins.drivers.proto.FingerprintRequest hashicorp.nomad.plugins.drivers.proto.FingerprintResponse server-streaming
  rpc /hashicorp.nomad.plugins.drivers.proto.Driver/RecoverTask hashicorp.nomad.plugins.drivers.proto.RecoverTaskRequest hashicorp.nomad.plugins.drivers.proto.RecoverTaskResponse unary
  rpc /hashicorp.nomad.plugins.drivers.proto.Driver/StartTask hashicorp.nomad.plugins.drivers.proto.StartTaskRequest hashicorp.nomad.plugins.drivers.proto.StartTaskResponse unary
  rpc /hashicorp.nomad.plugins.drivers.proto.Driver/WaitTask hashicorp.nomad.plugins.drivers.proto.WaitTaskRequest hashicorp.nomad.plugins.drivers.proto.WaitTaskResponse unary
  rpc /hashicorp.nomad.plugins.drivers.proto.Driver/StopTask hashicorp.nomad.plugins.drivers.proto.StopTaskRequest hashicorp.nomad.plugins.drivers.proto.StopTaskResponse unary
  rpc /hashicorp.nomad.plugins.drivers.proto.Driver/DestroyTask hashicorp.nomad.plugins.drivers.proto.DestroyTaskRequest hashicorp.nomad.plugins.drivers.proto.DestroyTaskResponse unary
  rpc /hashicorp.nomad.plugins.drivers.proto.Driver/InspectTask hashicorp.nomad.plugins.drivers.proto.InspectTaskRequest hashicorp.nomad.plugins.drivers.proto.InspectTaskResponse unary
  rpc /hashicorp.nomad.plugins.drivers.proto.Driver/TaskStats hashicorp.nomad.plugins.drivers.proto.TaskStatsRequest hashicorp.nomad.plugins.drivers.proto.TaskStatsResponse server-streaming
  rpc /hashicorp.nomad.plugins.drivers.proto.Driver/TaskEvents hashicorp.nomad.plugins.drivers.proto.TaskEventsRequest hashicorp.nomad.plugins.drivers.proto.DriverTaskEvent server-streaming
  rpc /hashicorp.nomad.plugins.drivers.proto.Driver/Shutdown hashicorp.nomad.plugins.drivers.proto.ShutdownRequest hashicorp.nomad.plugins.drivers.proto.ShutdownResponse unary
  rpc /hashicorp.nomad.plugins.drivers.proto.Driver/SignalTask hashicorp.nomad.plugins.drivers.proto.SignalTaskRequest hashicorp.nomad.plugins.drivers.proto.SignalTaskResponse unary
  rpc /hashicorp.nomad.plugins.drivers.proto.Driver/ExecTask hashicorp.nomad.plugins.drivers.proto.ExecTaskRequest hashicorp.nomad.plugins.drivers.proto.ExecTaskResponse unary
  rpc /hashicorp.nomad.plugins.drivers.proto.Driver/ExecTaskStreaming hashicorp.nomad.plugins.drivers.proto.ExecTaskStreamingRequest hashicorp.nomad.plugins.drivers.proto.ExecTaskStreamingResponse bidirectional
  rpc /hashicorp.nomad.plugins.drivers.proto.Driver/CreateNetwork hashicorp.nomad.plugins.drivers.proto.CreateNetworkRequest hashicorp.nomad.plugins.drivers.proto.CreateNetworkResponse unary
  rpc /hashicorp.nomad.plugins.drivers.proto.Driver/DestroyNetwork hashicorp.nomad.plugins.drivers.proto.DestroyNetworkRequest hashicorp.nomad.plugins.drivers.proto.DestroyNetworkResponse unary
message hashicorp.nomad.plugins.base.proto.PluginInfoRequest
message hashicorp.nomad.plugins.base.proto.PluginInfoResponse
  1 type hashicorp.nomad.plugins.base.proto.PluginType -
  2 plugin_api_versions string repeated
  3 plugin_version string -
  4 name string -
enum hashicorp.nomad.plugins.base.proto.PluginType
  UNKNOWN = 0
  DRIVER = 2
  DEVICE = 3
message hashicorp.nomad.plugins.base.proto.ConfigSchemaRequest
message hashicorp.nomad.plugins.base.proto.ConfigSchemaResponse
  1 spec hashicorp.nomad.plugins.shared.hclspec.Spec -
message hashicorp.nomad.plugins.base.proto.SetConfigRequest
  1 msgpack_config bytes -
  2 nomad_config hashicorp.nomad.plugins.base.proto.NomadConfig -
  3 plugin_api_version string -
message hashicorp.nomad.plugins.base.proto.NomadConfig
  1 driver hashicorp.nomad.plugins.base.proto.NomadDriverConfig -
message hashicorp.nomad.plugins.base.proto.NomadDriverConfig
  1 ClientMaxPort uint32 -
  2 ClientMinPort uint32 -
  3 Topology hashicorp.nomad.plugins.base.proto.ClientTopology -
message hashicorp.nomad.plugins.base.proto.ClientTopology
  1 node_ids uint32 repeated
  2 distances hashicorp.nomad.plugins.base.proto.ClientTopologySLIT -
  3 cores hashicorp.nomad.plugins.base.proto.ClientTopologyCore repeated
  4 override_total_compute uint64 -
  5 override_withold_compute uint64 -
message hashicorp.nomad.plugins.base.proto.ClientTopologySLIT
  1 dimension uint32 -
  2 values uint32 repeated
message hashicorp.nomad.plugins.base.proto.ClientTopologyCore
  1 socket_id uint32 -
  2 node_id uint32 -
  3 core_id uint32 -
  4 core_grade hashicorp.nomad.plugins.base.proto.CoreGrade -
  5 disable bool -
  6 base_speed uint64 -
  7 max_speed uint64 -
  8 guess_speed uint64 -
enum hashicorp.nomad.plugins.base.proto.CoreGrade
  Performance = 0
  Efficiency = 1
message hashicorp.nomad.plugins.base.proto.SetConfigResponse
message hashicorp.nomad.plugins.drivers.proto.InitRequest
message hashicorp.nomad.plugins.drivers.proto.InitResponse
message hashicorp.nomad.plugins.drivers.proto.TaskConfigSchemaRequest
message hashicorp.nomad.plugins.drivers.proto.TaskConfigSchemaResponse
  1 spec hashicorp.nomad.plugins.shared.hclspec.Spec -
message hashicorp.nomad.plugins.drivers.proto.CapabilitiesRequest
message hashicorp.nomad.plugins.drivers.proto.CapabilitiesResponse
  1 capabilities hashicorp.nomad.plugins.drivers.proto.DriverCapabilities -
message hashicorp.nomad.plugins.drivers.proto.FingerprintRequest
message hashicorp.nomad.plugins.drivers.proto.FingerprintResponse
  1 attributes map<string,hashicorp.nomad.plugins.shared.structs.Attribute> map
  2 health hashicorp.nomad.plugins.drivers.proto.FingerprintResponse.HealthState -
  3 health_description string -
  4 err string -
enum hashicorp.nomad.plugins.drivers.proto.FingerprintResponse.HealthState
  UNDETECTED = 0
  UNHEALTHY = 1
  HEALTHY = 2
message hashicorp.nomad.plugins.drivers.proto.RecoverTaskRequest
  1 task_id string -
  2 handle hashicorp.nomad.plugins.drivers.proto.TaskHandle -
message hashicorp.nomad.plugins.drivers.proto.RecoverTaskResponse
message hashicorp.nomad.plugins.drivers.proto.StartTaskRequest
  1 task hashicorp.nomad.plugins.drivers.proto.TaskConfig -
message hashicorp.nomad.plugins.drivers.proto.StartTaskResponse
  1 result hashicorp.nomad.plugins.drivers.proto.StartTaskResponse.Result -
  2 driver_error_msg string -
  3 handle hashicorp.nomad.plugins.drivers.proto.TaskHandle -
  4 network_override hashicorp.nomad.plugins.drivers.proto.NetworkOverride -
enum hashicorp.nomad.plugins.drivers.proto.StartTaskResponse.Result
  SUCCESS = 0
  RETRY = 1
  FATAL = 2
message hashicorp.nomad.plugins.drivers.proto.WaitTaskRequest
  1 task_id string -
message hashicorp.nomad.plugins.drivers.proto.WaitTaskResponse
  1 result hashicorp.nomad.plugins.drivers.proto.ExitResult -
  2 err string -
message hashicorp.nomad.plugins.drivers.proto.StopTaskRequest
  1 task_id string -
  2 timeout google.protobuf.Duration -
  3 signal string -
message hashicorp.nomad.plugins.drivers.proto.StopTaskResponse
message hashicorp.nomad.plugins.drivers.proto.DestroyTaskRequest
  1 task_id string -
  2 force bool -
message hashicorp.nomad.plugins.drivers.proto.DestroyTaskResponse
message hashicorp.nomad.plugins.drivers.proto.InspectTaskRequest
  1 task_id string -
message hashicorp.nomad.plugins.drivers.proto.InspectTaskResponse
  1 task hashicorp.nomad.plugins.drivers.proto.TaskStatus -
  2 driver hashicorp.nomad.plugins.drivers.proto.TaskDriverStatus -
  3 network_override hashicorp.nomad.plugins.drivers.proto.NetworkOverride -
message hashicorp.nomad.plugins.drivers.proto.TaskStatsRequest
  1 task_id string -
  2 collection_interval google.protobuf.Duration -
message hashicorp.nomad.plugins.drivers.proto.TaskStatsResponse
  1 stats hashicorp.nomad.plugins.drivers.proto.TaskStats -
message hashicorp.nomad.plugins.drivers.proto.TaskEventsRequest
message hashicorp.nomad.plugins.drivers.proto.SignalTaskRequest
  1 task_id string -
  2 signal string -
message hashicorp.nomad.plugins.drivers.proto.SignalTaskResponse
message hashicorp.nomad.plugins.drivers.proto.ExecTaskRequest
  1 task_id string -
  2 command string repeated
  3 timeout google.protobuf.Duration -
message hashicorp.nomad.plugins.drivers.proto.ExecTaskResponse
  1 stdout bytes -
  2 stderr bytes -
  3 result hashicorp.nomad.plugins.drivers.proto.ExitResult -
message hashicorp.nomad.plugins.drivers.proto.ExecTaskStreamingRequest
  1 setup hashicorp.nomad.plugins.drivers.proto.ExecTaskStreamingRequest.Setup -
  2 tty_size hashicorp.nomad.plugins.drivers.proto.ExecTaskStreamingRequest.TerminalSize -
  3 stdin hashicorp.nomad.plugins.drivers.proto.ExecTaskStreamingIOOperation -
message hashicorp.nomad.plugins.drivers.proto.ExecTaskStreamingRequest.Setup
  1 task_id string -
  2 command string repeated
  3 tty bool -
message hashicorp.nomad.plugins.drivers.proto.ExecTaskStreamingRequest.TerminalSize
  1 height int32 -
  2 width int32 -
message hashicorp.nomad.plugins.drivers.proto.ExecTaskStreamingIOOperation
  1 data bytes -
  2 close bool -
message hashicorp.nomad.plugins.drivers.proto.ExecTaskStreamingResponse
  1 stdout hashicorp.nomad.plugins.drivers.proto.ExecTaskStreamingIOOperation -
  2 stderr hashicorp.nomad.plugins.drivers.proto.ExecTaskStreamingIOOperation -
  3 exited bool -
  4 result hashicorp.nomad.plugins.drivers.proto.ExitResult -
message hashicorp.nomad.plugins.drivers.proto.CreateNetworkRequest
  1 alloc_id string -
  2 hostname string -
message hashicorp.nomad.plugins.drivers.proto.CreateNetworkResponse
  1 isolation_spec hashicorp.nomad.plugins.drivers.proto.NetworkIsolationSpec -
  2 created bool -
message hashicorp.nomad.plugins.drivers.proto.DestroyNetworkRequest
  1 alloc_id string -
  2 isolation_spec hashicorp.nomad.plugins.drivers.proto.NetworkIsolationSpec -
message hashicorp.nomad.plugins.drivers.proto.DestroyNetworkResponse
message hashicorp.nomad.plugins.drivers.proto.ShutdownRequest
message hashicorp.nomad.plugins.drivers.proto.ShutdownResponse
message hashicorp.nomad.plugins.drivers.proto.DriverCapabilities
  1 send_signals bool -
  2 exec bool -
  3 fs_isolation hashicorp.nomad.plugins.drivers.proto.DriverCapabilities.FSIsolation -
  4 network_isolation_modes hashicorp.nomad.plugins.drivers.proto.NetworkIsolationSpec.NetworkIsolationMode repeated
  5 must_create_network bool -
  6 mount_configs hashicorp.nomad.plugins.drivers.proto.DriverCapabilities.MountConfigs -
  reserved 7
  reserved "remote_tasks"
  8 disable_log_collection bool -
  9 dynamic_workload_users bool -
enum hashicorp.nomad.plugins.drivers.proto.DriverCapabilities.FSIsolation
  NONE = 0
  CHROOT = 1
  IMAGE = 2
  UNVEIL = 3
enum hashicorp.nomad.plugins.drivers.proto.DriverCapabilities.MountConfigs allow_alias
  UNKNOWN_MOUNTS = 0
  ANY_MOUNTS = 0
  NO_MOUNTS = 1
message hashicorp.nomad.plugins.drivers.proto.NetworkIsolationSpec
  1 mode hashicorp.nomad.plugins.drivers.proto.NetworkIsolationSpec.NetworkIsolationMode -
  2 path string -
  3 labels map<string,string> map
  4 hostsConfig hashicorp.nomad.plugins.drivers.proto.HostsConfig -
enum hashicorp.nomad.plugins.drivers.proto.NetworkIsolationSpec.NetworkIsolationMode
  HOST = 0
  GROUP = 1
  TASK = 2
  NONE = 3
message hashicorp.nomad.plugins.drivers.proto.HostsConfig
  1 hostname string -
  2 address string -
message hashicorp.nomad.plugins.drivers.proto.DNSConfig
  1 servers string repeated
  2 searches string repeated
  3 options string repeated
message hashicorp.nomad.plugins.drivers.proto.NetworkOverride
  1 port_map map<string,int32> map
  2 addr string -
  3 auto_advertise bool -
message hashicorp.nomad.plugins.drivers.proto.TaskConfig
  1 id string -
  2 name string -
  3 msgpack_driver_config bytes -
  4 env map<string,string> map
  5 device_env map<string,string> map
  6 resources hashicorp.nomad.plugins.drivers.proto.Resources -
  7 mounts hashicorp.nomad.plugins.drivers.proto.Mount repeated
  8 devices hashicorp.nomad.plugins.drivers.proto.Device repeated
  9 user string -
  10 alloc_dir string -
  11 stdout_path string -
  12 stderr_path string -
  13 task_group_name string -
  14 job_name string -
  15 alloc_id string -
  16 network_isolation_spec hashicorp.nomad.plugins.drivers.proto.NetworkIsolationSpec -
  17 dns hashicorp.nomad.plugins.drivers.proto.DNSConfig -
  18 job_id string -
  19 namespace string -
  20 node_name string -
  21 node_id string -
  22 parent_job_id string -
message hashicorp.nomad.plugins.drivers.proto.Resources
  1 allocated_resources hashicorp.nomad.plugins.drivers.proto.AllocatedTaskResources -
  2 linux_resources hashicorp.nomad.plugins.drivers.proto.LinuxResources -
  3 ports hashicorp.nomad.plugins.drivers.proto.PortMapping repeated
message hashicorp.nomad.plugins.drivers.proto.AllocatedTaskResources
  1 cpu hashicorp.nomad.plugins.drivers.proto.AllocatedCpuResources -
  2 memory hashicorp.nomad.plugins.drivers.proto.AllocatedMemoryResources -
  5 networks hashicorp.nomad.plugins.drivers.proto.NetworkResource repeated
message hashicorp.nomad.plugins.drivers.proto.AllocatedCpuResources
  1 cpu_shares int64 -
message hashicorp.nomad.plugins.drivers.proto.AllocatedMemoryResources
  2 memory_mb int64 -
  3 memory_max_mb int64 -
message hashicorp.nomad.plugins.drivers.proto.NetworkResource
  1 device string -
  2 cidr string -
  3 ip string -
  4 mbits int32 -
  5 reserved_ports hashicorp.nomad.plugins.drivers.proto.NetworkPort repeated
  6 dynamic_ports hashicorp.nomad.plugins.drivers.proto.NetworkPort repeated
message hashicorp.nomad.plugins.drivers.proto.NetworkPort
  1 label string -
  2 value int32 -
message hashicorp.nomad.plugins.drivers.proto.PortMapping
  1 label string -
  2 value int32 -
  3 to int32 -
  4 host_ip string -
message hashicorp.nomad.plugins.drivers.proto.LinuxResources
  1 cpu_period int64 -
  2 cpu_quota int64 -
  3 cpu_shares int64 -
  4 memory_limit_bytes int64 -
  5 oom_score_adj int64 -
  6 cpuset_cpus string -
  reserved 7
  reserved "cpuset_mems"
  8 PercentTicks double -
  9 cpuset_cgroup string -
message hashicorp.nomad.plugins.drivers.proto.Mount
  1 task_path string -
  2 host_path string -
  3 readonly bool -
  4 propagation_mode string -
  5 selinux_label string -
  6 request_name string -
message hashicorp.nomad.plugins.drivers.proto.Device
  1 task_path string -
  2 host_path string -
  3 cgroup_permissions string -
message hashicorp.nomad.plugins.drivers.proto.TaskHandle
  1 version int32 -
  2 config hashicorp.nomad.plugins.drivers.proto.TaskConfig -
  3 state hashicorp.nomad.plugins.drivers.proto.TaskState -
  4 driver_state bytes -
enum hashicorp.nomad.plugins.drivers.proto.TaskState
  UNKNOWN = 0
  RUNNING = 1
  EXITED = 2
message hashicorp.nomad.plugins.drivers.proto.ExitResult
  1 exit_code int32 -
  2 signal int32 -
  3 oom_killed bool -
message hashicorp.nomad.plugins.drivers.proto.TaskStatus
  1 id string -
  2 name string -
  3 state hashicorp.nomad.plugins.drivers.proto.TaskState -
  4 started_at google.protobuf.Timestamp -
  5 completed_at google.protobuf.Timestamp -
  6 result hashicorp.nomad.plugins.drivers.proto.ExitResult -
message hashicorp.nomad.plugins.drivers.proto.TaskDriverStatus
  1 attributes map<string,string> map
message hashicorp.nomad.plugins.drivers.proto.TaskStats
  1 id string -
  2 timestamp google.protobuf.Timestamp -
  3 agg_resource_usage hashicorp.nomad.plugins.drivers.proto.TaskResourceUsage -
  4 resource_usage_by_pid map<string,hashicorp.nomad.plugins.drivers.proto.TaskResourceUsage> map
message hashicorp.nomad.plugins.drivers.proto.TaskResourceUsage
  1 cpu hashicorp.nomad.plugins.drivers.proto.CPUUsage -
  2 memory hashicorp.nomad.plugins.drivers.proto.MemoryUsage -
message hashicorp.nomad.plugins.drivers.proto.CPUUsage
  1 system_mode double -
  2 user_mode double -
  3 total_ticks double -
  4 throttled_periods uint64 -
  5 throttled_time uint64 -
  6 percent double -
  7 measured_fields hashicorp.nomad.plugins.drivers.proto.CPUUsage.Fields repeated
enum hashicorp.nomad.plugins.drivers.proto.CPUUsage.Fields
  SYSTEM_MODE = 0
  USER_MODE = 1
  TOTAL_TICKS = 2
  THROTTLED_PERIODS = 3
  THROTTLED_TIME = 4
  PERCENT = 5
message hashicorp.nomad.plugins.drivers.proto.MemoryUsage
  1 rss uint64 -
  2 cache uint64 -
  3 max_usage uint64 -
  4 kernel_usage uint64 -
  5 kernel_max_usage uint64 -
  6 measured_fields hashicorp.nomad.plugins.drivers.proto.MemoryUsage.Fields repeated
  7 usage uint64 -
  8 swap uint64 -
enum hashicorp.nomad.plugins.drivers.proto.MemoryUsage.Fields
  RSS = 0
  CACHE = 1
  MAX_USAGE = 2
  KERNEL_USAGE = 3
  KERNEL_MAX_USAGE = 4
  USAGE = 5
  SWAP = 6
message hashicorp.nomad.plugins.drivers.proto.DriverTaskEvent
  1 task_id string -
  2 alloc_id string -
  3 task_name string -
  4 timestamp google.protobuf.Timestamp -
  5 message string -
  6 annotations map<string,string> map
message hashicorp.nomad.plugins.shared.structs.Attribute
  1 float_val double oneof:value
  2 int_val int64 oneof:value
  3 string_val string oneof:value
  4 bool_val bool oneof:value
  5 unit string -
message hashicorp.nomad.plugins.shared.structs.RecoverableError
  1 recoverable bool -
message hashicorp.nomad.plugins.shared.hclspec.Spec
  1 object hashicorp.nomad.plugins.shared.hclspec.Object oneof:block
  2 array hashicorp.nomad.plugins.shared.hclspec.Array oneof:block
  3 Attr hashicorp.nomad.plugins.shared.hclspec.Attr oneof:block
  4 block_value hashicorp.nomad.plugins.shared.hclspec.Block oneof:block
  5 block_attrs hashicorp.nomad.plugins.shared.hclspec.BlockAttrs oneof:block
  6 block_list hashicorp.nomad.plugins.shared.hclspec.BlockList oneof:block
  7 block_set hashicorp.nomad.plugins.shared.hclspec.BlockSet oneof:block
  8 block_map hashicorp.nomad.plugins.shared.hclspec.BlockMap oneof:block
  9 default hashicorp.nomad.plugins.shared.hclspec.Default oneof:block
  10 literal hashicorp.nomad.plugins.shared.hclspec.Literal oneof:block
message hashicorp.nomad.plugins.shared.hclspec.Object
  1 attributes map<string,hashicorp.nomad.plugins.shared.hclspec.Spec> map
message hashicorp.nomad.plugins.shared.hclspec.Array
  1 values hashicorp.nomad.plugins.shared.hclspec.Spec repeated
message hashicorp.nomad.plugins.shared.hclspec.Attr
  1 name string -
  2 type string -
  3 required bool -
message hashicorp.nomad.plugins.shared.hclspec.Block
  1 name string -
  2 required bool -
  3 nested hashicorp.nomad.plugins.shared.hclspec.Spec -
message hashicorp.nomad.plugins.shared.hclspec.BlockAttrs
  1 name string -
  2 type string -
  3 required bool -
message hashicorp.nomad.plugins.shared.hclspec.BlockList
  1 name string -
  2 min_items uint64 -
  3 max_items uint64 -
  4 nested hashicorp.nomad.plugins.shared.hclspec.Spec -
message hashicorp.nomad.plugins.shared.hclspec.BlockSet
  1 name string -
  2 min_items uint64 -
  3 max_items uint64 -
  4 nested hashicorp.nomad.plugins.shared.hclspec.Spec -
message hashicorp.nomad.plugins.shared.hclspec.BlockMap
  1 name string -
  2 labels string repeated
  3 nested hashicorp.nomad.plugins.shared.hclspec.Spec -
message hashicorp.nomad.plugins.shared.hclspec.Literal
  1 value string -
message hashicorp.nomad.plugins.shared.hclspec.Default
  1 primary hashicorp.nomad.plugins.shared.hclspec.Spec -
  2 default hashicorp.nomad.plugins.shared.hclspec.Spec -
service hashicorp.nomad.plugins.device.DevicePlugin
  rpc /hashicorp.nomad.plugins.device.DevicePlugin/Fingerprint hashicorp.nomad.plugins.device.FingerprintRequest hashicorp.nomad.plugins.device.FingerprintResponse server-streaming
  rpc /hashicorp.nomad.plugins.device.DevicePlugin/Reserve hashicorp.nomad.plugins.device.ReserveRequest hashicorp.nomad.plugins.device.ReserveResponse unary
  rpc /hashicorp.nomad.plugins.device.DevicePlugin/Stats hashicorp.nomad.plugins.device.StatsRequest hashicorp.nomad.plugins.device.StatsResponse server-streaming
message hashicorp.nomad.plugins.device.FingerprintRequest
message hashicorp.nomad.plugins.device.FingerprintResponse
  1 device_group hashicorp.nomad.plugins.device.DeviceGroup repeated
message hashicorp.nomad.plugins.device.DeviceGroup
  1 vendor string -
  2 device_type string -
  3 device_name string -
  4 devices hashicorp.nomad.plugins.device.DetectedDevice repeated
  5 attributes map<string,hashicorp.nomad.plugins.shared.structs.Attribute> map
message hashicorp.nomad.plugins.device.DetectedDevice
  1 ID string -
  2 healthy bool -
  3 health_description string -
  4 hw_locality hashicorp.nomad.plugins.device.DeviceLocality -
message hashicorp.nomad.plugins.device.DeviceLocality
  1 pci_bus_id string -
message hashicorp.nomad.plugins.device.ReserveRequest
  1 device_ids string repeated
message hashicorp.nomad.plugins.device.ReserveResponse
  1 container_res hashicorp.nomad.plugins.device.ContainerReservation -
message hashicorp.nomad.plugins.device.ContainerReservation
  1 envs map<string,string> map
  2 mounts hashicorp.nomad.plugins.device.Mount repeated
  3 devices hashicorp.nomad.plugins.device.DeviceSpec repeated
message hashicorp.nomad.plugins.device.Mount
  1 task_path string -
  2 host_path string -
  3 read_only bool -
message hashicorp.nomad.plugins.device.DeviceSpec
  1 task_path string -
  2 host_path string -
  3 permissions string -
message hashicorp.nomad.plugins.device.StatsRequest
  1 collection_interval google.protobuf.Duration -
message hashicorp.nomad.plugins.device.StatsResponse
  1 groups hashicorp.nomad.plugins.device.DeviceGroupStats repeated
message hashicorp.nomad.plugins.device.DeviceGroupStats
  1 vendor string -
  2 type string -
  3 name string -
  4 instance_stats map<string,hashicorp.nomad.plugins.device.DeviceStats> map
message hashicorp.nomad.plugins.device.DeviceStats
  1 summary hashicorp.nomad.plugins.shared.structs.StatValue -
  2 stats hashicorp.nomad.plugins.shared.structs.StatObject -
  3 timestamp google.protobuf.Timestamp -
message hashicorp.nomad.plugins.shared.structs.StatObject
  1 nested map<string,hashicorp.nomad.plugins.shared.structs.StatObject> map
  2 attributes map<string,hashicorp.nomad.plugins.shared.structs.StatValue> map
message hashicorp.nomad.plugins.shared.structs.StatValue
  1 float_numerator_val google.protobuf.DoubleValue -
  2 float_denominator_val google.protobuf.DoubleValue -
  3 int_numerator_val google.protobuf.Int64Value -
  4 int_denominator_val google.protobuf.Int64Value -
  5 string_val google.protobuf.StringValue -
  6 bool_val google.protobuf.BoolValue -
  7 unit string -
  8 desc string -
`
