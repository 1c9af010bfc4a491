<?php
// A PHP app for the integration tests behind php-fpm:
//   ?sleep=N  answers after N seconds (past request_terminate_timeout)
//   ?leak=N   allocates N MiB and keeps it for the rest of the request,
//             growing with each call through a static in APCu-less PHP:
//             the child's memory is not returned, so repeated calls
//             raise its RSS until an OOM kill
//   else      answers its pid
if (isset($_GET['sleep'])) {
    sleep((int)$_GET['sleep']);
}
if (isset($_GET['leak'])) {
    $GLOBALS['hoard'] = str_repeat('x', (int)$_GET['leak'] << 20);
    // Hold it while the request lasts, long enough to be killed with it.
    usleep(isset($_GET['hold']) ? (int)$_GET['hold'] * 1000 : 0);
}
echo getmypid(), "\n";
