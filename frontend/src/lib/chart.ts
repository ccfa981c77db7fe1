import type { ChartData, StatCard } from '../api/types'

/** Hour label of an RFC 3339 hour start, in the page's time zone and language. */
export function hourLabel(iso: string, locale: string): string {
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return iso
  return d.toLocaleString(locale, { month: 'numeric', day: 'numeric', hour: '2-digit', minute: '2-digit' })
}

/** The ECharts option of the hourly chart: one line per dataset, in the API's colours. */
export function hourlyOption(data: ChartData, locale: string, dark: boolean) {
  const text = dark ? '#ddd' : '#333'
  return {
    backgroundColor: 'transparent',
    tooltip: { trigger: 'axis' },
    legend: { top: 0, data: data.datasets.map((d) => d.label), textStyle: { color: text } },
    animationDuration: 300,
    grid: { left: 40, right: 16, top: 36, bottom: 30, containLabel: true },
    xAxis: {
      type: 'category',
      boundaryGap: false,
      data: data.labels.map((l) => hourLabel(l, locale)),
      axisLabel: { color: text },
    },
    yAxis: { type: 'value', minInterval: 1, axisLabel: { color: text }, splitLine: { lineStyle: { color: dark ? '#333' : '#e5e5e5' } } },
    series: data.datasets.map((d) => ({
      name: d.label,
      type: 'line',
      smooth: true,
      showSymbol: false,
      areaStyle: { opacity: 0.15 },
      itemStyle: { color: d.color },
      lineStyle: { color: d.color },
      data: d.data,
    })),
  }
}

/** Totals of each dataset, for the figures beside the chart. */
export function datasetTotals(data: ChartData): number[] {
  return data.datasets.map((d) => d.data.reduce((a, b) => a + b, 0))
}

/** How a card's trend reads: its text (+12.5%), and whether it is good news. */
export function trendOf(card: StatCard, kind: 'percent' | 'points', goodWhenGrowth = true): { text: string; good: boolean } {
  const sign = card.trend > 0 ? '+' : card.trend < 0 ? '−' : ''
  const v = Math.abs(card.trend)
  const text = sign + (Number.isInteger(v) ? String(v) : v.toFixed(1)) + (kind === 'percent' ? '%' : ' pp')
  return { text, good: goodWhenGrowth ? card.trend_is_growth : !card.trend_is_growth }
}

/** A compact number: 1234 → 1.2K, 1234567 → 1.2M. */
export function compact(n: number): string {
  const a = Math.abs(n)
  if (a >= 1e9) return (n / 1e9).toFixed(1).replace(/\.0$/, '') + 'B'
  if (a >= 1e6) return (n / 1e6).toFixed(1).replace(/\.0$/, '') + 'M'
  if (a >= 1e4) return (n / 1e3).toFixed(1).replace(/\.0$/, '') + 'K'
  return Number.isInteger(n) ? String(n) : n.toFixed(2)
}
