// Start screen of the stub app: asks the Rust side for its status through Tauri's invoke.
const invoke = window.__TAURI__?.core?.invoke;

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text ?? "–";
  if (cls) td.className = cls;
  return td;
}

async function refresh() {
  const status = document.getElementById("status");
  if (!invoke) {
    status.textContent = "Not running inside the desktop app.";
    return;
  }
  try {
    const s = await invoke("studio_status");
    const body = document.querySelector("#models tbody");
    body.replaceChildren(
      ...s.models.map((m) => {
        const tr = document.createElement("tr");
        tr.append(
          cell(m.id, "num"),
          cell(m.display_name ?? m.name),
          cell(m.architecture),
          cell(m.parameter_count?.toLocaleString(), "num"),
          cell(m.quantization),
          cell(m.path),
        );
        return tr;
      }),
    );
    status.textContent = `data directory ${s.data_dir} · schema version ${s.schema_version}`;
  } catch (e) {
    status.textContent = String(e);
    status.className = "error";
  }
}

refresh();
