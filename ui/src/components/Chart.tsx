import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import { fmtTick } from "../metrics";

export interface ChartSeries {
  label: string;
  color: string;
  values: (number | null)[];
}

/** Dark or light, following prefers-color-scheme. */
function useDark(): boolean {
  const q = typeof matchMedia === "function" ? matchMedia("(prefers-color-scheme: dark)") : null;
  const [dark, setDark] = useState(q?.matches ?? false);
  useEffect(() => {
    if (!q) return;
    const f = () => setDark(q.matches);
    q.addEventListener("change", f);
    return () => q.removeEventListener("change", f);
  }, []);
  return dark;
}

/** Dashed vertical lines where a new training round starts. */
function boundaries(getXs: () => number[]): uPlot.Plugin {
  return {
    hooks: {
      draw: (u) => {
        const xs = getXs();
        if (!xs.length) return;
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = getComputedStyle(u.root).getPropertyValue("--chart-boundary") || "#888";
        ctx.setLineDash([4 * devicePixelRatio, 4 * devicePixelRatio]);
        ctx.lineWidth = devicePixelRatio;
        const { top, height } = u.bbox;
        for (const x of xs) {
          const px = Math.round(u.valToPos(x, "x", true));
          if (px < u.bbox.left || px > u.bbox.left + u.bbox.width) continue;
          ctx.beginPath();
          ctx.moveTo(px, top);
          ctx.lineTo(px, top + height);
          ctx.stroke();
        }
        ctx.restore();
      },
    },
  };
}

/** A line chart over global training steps. */
export function Chart(props: {
  title: string;
  x: number[];
  series: ChartSeries[];
  /** x values (global steps) where a round begins. */
  rounds?: number[];
  testid?: string;
  height?: number;
}) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const roundsRef = useRef<number[]>(props.rounds ?? []);
  roundsRef.current = props.rounds ?? [];
  const dark = useDark();
  const height = props.height ?? 180;
  const labels = props.series.map((s) => s.label).join("|");

  const data = (): uPlot.AlignedData => [props.x, ...props.series.map((s) => s.values)] as uPlot.AlignedData;

  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const axis = dark ? "#a8b3c4" : "#4a5568";
    const grid = dark ? "rgba(255,255,255,0.07)" : "rgba(0,0,0,0.07)";
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height,
      legend: { show: true, live: true },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: false } },
      axes: [
        { stroke: axis, grid: { stroke: grid }, ticks: { stroke: grid }, size: 32 },
        { stroke: axis, grid: { stroke: grid }, ticks: { stroke: grid }, size: 56, values: (_u, splits) => splits.map(fmtTick) },
      ],
      series: [
        { label: "step" },
        ...props.series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 1.6,
          spanGaps: true,
          value: (_u: uPlot, v: number | null) => fmtTick(v),
          points: { show: false },
        })),
      ],
      plugins: [boundaries(() => roundsRef.current)],
    };
    const u = new uPlot(opts, data(), el);
    plot.current = u;
    const ro = new ResizeObserver(() => {
      const w = Math.max(200, el.clientWidth);
      if (w !== u.width) u.setSize({ width: w, height });
    });
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [dark, labels, height]);

  useEffect(() => {
    plot.current?.setData(data());
  });

  return (
    <figure class="chart card" data-testid={props.testid}>
      <figcaption>{props.title}</figcaption>
      {props.x.length === 0 && <div class="chart-empty">waiting for the first training step…</div>}
      <div ref={host} class="chart-host" />
    </figure>
  );
}
