//! A private Debian nginx: the reference proxy column and the static SSE upstream.

use super::*;

pub(crate) struct Nginx {
    pub(crate) proc: Proc,
    /// Base URL of each `server` block, in the order given.
    pub(crate) bases: Vec<String>,
}

pub(crate) fn nginx_bin() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Starts a private Debian nginx from a config generated in `tmp/name` (`workers`: `auto` =
/// cores, or a number; no access log, keep-alive never cut short), one `server` per entry of
/// `locations` (the body of its `location /`), plus `extra` in the `http` block.
pub(crate) fn start_nginx(
    tmp: &Path,
    name: &str,
    workers: &str,
    extra: &str,
    locations: &[String],
) -> Result<Nginx, String> {
    let bin = nginx_bin().ok_or("nginx is not installed")?;
    let dir = tmp.join(name);
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| e.to_string())?;
    let ports: Vec<u16> = locations.iter().map(|_| free_port()).collect();
    let servers: String = locations
        .iter()
        .zip(&ports)
        .map(|(loc, port)| {
            format!(
                "    server {{\n        listen 127.0.0.1:{port};\n        keepalive_requests 10000000;\n        location / {{\n{loc}        }}\n    }}\n"
            )
        })
        .collect();
    // Root's workers would drop to `nobody` and could not use our temp dirs.
    let user = if is_root() { "user root;\n" } else { "" };
    let conf = format!(
        r#"{user}worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{extra}
{servers}}}
"#,
        dir = dir.display()
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("logs/stderr.log")).map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start nginx: {e}"))?;
    let proc = Proc {
        child,
        name: "nginx",
    };
    let bases = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    for _ in 0..300 {
        if ports
            .iter()
            .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
        {
            return Ok(Nginx { proc, bases });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!(
        "nginx did not listen; see {}",
        dir.join("logs").display()
    ))
}

/// A plain reverse proxy location: keep-alive upstream connections and no response buffering
/// (what any SSE proxy configures); request bodies up to 1 MB stay in memory, as in serve.
pub(crate) fn proxy_location(upstream: &str) -> String {
    format!(
        "            proxy_pass http://{upstream};\n            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n            proxy_buffering off;\n            client_body_buffer_size 1m;\n"
    )
}

pub(crate) fn upstream_block(name: &str, port: u16) -> String {
    format!("    upstream {name} {{ server 127.0.0.1:{port}; keepalive 256; keepalive_requests 10000000; }}\n")
}

pub(crate) fn port_of(base: &str) -> u16 {
    base.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in base URL")
}

pub(crate) fn is_root() -> bool {
    // Root's nginx workers drop to `nobody` by default and could not use our temp dirs.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
