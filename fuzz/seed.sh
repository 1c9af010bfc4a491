#!/usr/bin/env bash
# Seed each fuzz target's corpus from the repo's fixtures (real captured
# logs, kmsg records, configs), so the fuzzer starts from real input.
set -euo pipefail
cd "$(dirname "$0")"
fx=../fixtures
c=corpus
mkdir -p $c/access_log $c/error_log $c/kmsg $c/config $c/web_config $c/app_log $c/control_frame
# access_log: one mode byte, the format (or a log_format directive), lines.
fmt_upstream="\$remote_addr - \$remote_user [\$time_local] \"\$request\" \$status \$body_bytes_sent \"\$http_referer\" \"\$http_user_agent\" rt=\$request_time uct=\"\$upstream_connect_time\" urt=\"\$upstream_response_time\" ua=\"\$upstream_addr\" us=\"\$upstream_status\""
fmt_combined="\$remote_addr - \$remote_user [\$time_local] \"\$request\" \$status \$body_bytes_sent \"\$http_referer\" \"\$http_user_agent\""
{ printf '0%s\n' "$fmt_upstream"; head -c 4000 $fx/nginx/access_upstream.log; } > $c/access_log/upstream
{ printf '0%s\n' "$fmt_combined"; head -c 4000 $fx/nginx/access_combined.log; } > $c/access_log/combined
{ printf '0%s\n' "$(sed -n '12,14p' $fx/nginx/capture-nginx.conf | tr -d '\n' | sed 's/^ *//')"; head -c 4000 $fx/nginx/access_json.log; } > $c/access_log/json
# error_log: chunks of the captured error log.
split -l 20 -d $fx/nginx/error.log $c/error_log/error.
# kmsg: one record per file, and the OOM lines.
i=0
while IFS= read -r line; do
  case "$line" in " "*) continue ;; esac
  printf '%s' "$line" > $c/kmsg/rec.$i; i=$((i+1))
done < <(cat $fx/kernel/kmsg_records_hand.txt $fx/kernel/kmsg_memcg_oom_6.18.txt)
cp $fx/kernel/oom_lines_hand.txt $c/kmsg/oom_lines
# config: the README's example and the test configs.
awk '/^```yaml/{f=1;next}/^```/{f=0}f' ../README.md > $c/config/readme.yml
printf 'discover: [gunicorn]\n' > $c/config/default.yml
# web_config: every web config of the toolkit and the deploy example.
for f in $fx/web/exporter-toolkit/*.y*ml ../deploy/prometheus/web-config.yml; do
  cp "$f" $c/web_config/
done
# app_log: Gunicorn's captured logs, every version.
for f in $fx/gunicorn/*/*.log; do
  cp "$f" "$c/app_log/$(basename "$(dirname "$f")")_$(basename "$f")"
done
# control_frame: the captured control-socket answers, and an app socket's
# HTTP answer (what a wrong socket says).
cp $fx/gunicorn/27.0.1/*.frame $fx/gunicorn/27.0.1/app_socket_answer.bin $c/control_frame/
echo "seeded: $(find $c -type f | wc -l) files"
