/** Line icons (24×24, currentColor), drawn here so nothing is fetched. */
const paths: Record<string, string> = {
  chat: "M4 5h16v11H8l-4 4z",
  runs: "M4 19V5M4 19h16M8 15l3-4 3 2 5-6",
  pairs: "M4 6h7v12H4zM13 6h7v12h-7z",
  models: "M12 3l8 4.5v9L12 21l-8-4.5v-9zM12 12l8-4.5M12 12v9M12 12L4 7.5",
  settings:
    "M12 9a3 3 0 100 6 3 3 0 000-6zM19 12l2-1-1-3-2 .3-1.3-1.3L17 5l-3-1-1 2h-2L10 4 7 5l.3 2L6 8.3 4 8l-1 3 2 1v0l-2 1 1 3 2-.3L7.3 17 7 19l3 1 1-2h2l1 2 3-1-.3-2 1.3-1.3 2 .3 1-3z",
  send: "M4 12l16-8-6 16-2-6z",
  stop: "M7 7h10v10H7z",
  plus: "M12 5v14M5 12h14",
  folder: "M3 6h6l2 2h10v11H3z",
  check: "M5 12l5 5 9-10",
  x: "M6 6l12 12M18 6L6 18",
  edit: "M4 20h4L19 9l-4-4L4 16zM13 7l4 4",
  pause: "M8 5v14M16 5v14",
  play: "M7 5l12 7-12 7z",
  undo: "M9 14L4 9l5-5M4 9h10a6 6 0 010 12h-3",
  download: "M12 4v11M7 10l5 5 5-5M5 20h14",
  columns: "M4 5h7v14H4zM13 5h7v14h-7z",
  history: "M4 12a8 8 0 102.3-5.7M4 4v4h4M12 8v4l3 2",
  spark: "M12 3v4M12 17v4M3 12h4M17 12h4M6 6l2.5 2.5M15.5 15.5L18 18M6 18l2.5-2.5M15.5 8.5L18 6",
};

export function Icon({ name, size = 18 }: { name: keyof typeof paths | string; size?: number }) {
  return (
    <svg
      class="icon"
      width={size}
      height={size}
      viewBox="0 0 24 24"
      fill="none"
      stroke="currentColor"
      stroke-width="1.8"
      stroke-linecap="round"
      stroke-linejoin="round"
      aria-hidden="true"
    >
      <path d={paths[name] ?? ""} />
    </svg>
  );
}
