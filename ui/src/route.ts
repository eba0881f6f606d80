import { useEffect, useState } from "preact/hooks";

/** Hash routes: #/chat, #/runs, #/runs/<id>, #/runs/new, #/pairs, #/models, #/settings. */
export function currentRoute(): string[] {
  const h = location.hash.replace(/^#\/?/, "");
  if (h.startsWith("token=")) return ["chat"];
  const parts = h.split("/").filter(Boolean);
  return parts.length ? parts : ["chat"];
}

export function useRoute(): string[] {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const f = () => setRoute(currentRoute());
    window.addEventListener("hashchange", f);
    return () => window.removeEventListener("hashchange", f);
  }, []);
  return route;
}

export function go(path: string) {
  location.hash = `#/${path}`;
}
