# A Rack app for the integration tests under Puma and Unicorn:
#   /            answers its pid
#   /sleep?s=N   answers after N seconds (past Unicorn's timeout)
#   /leak?mb=N   allocates N MiB and keeps it: the memory growth that ends
#                in an OOM kill
#
# Each worker raises its own oom_score_adj to 1000 as it loads the app
# (both servers load it after the fork here), so that the kernel's OOM
# killer in the test's memory cgroup takes a worker, not the master.
HOARD = []

begin
  File.write("/proc/self/oom_score_adj", "1000") if ENV["BGW_WORKER_OOM_FIRST"]
rescue SystemCallError
  nil
end

run lambda { |env|
  q = Rack::Utils.parse_query(env["QUERY_STRING"] || "")
  case env["PATH_INFO"]
  when "/sleep"
    sleep(q.fetch("s", "1").to_f)
  when "/leak"
    q.fetch("mb", "10").to_i.times { HOARD << ("x" * (1 << 20)) }
  end
  [200, { "content-type" => "text/plain" }, ["#{Process.pid}\n"]]
}
