import { describe, expect, it } from 'vitest'
import { compact, datasetTotals, hourlyOption, trendOf } from './chart'
import type { ChartData } from '../api/types'

const data: ChartData = {
  labels: ['2026-01-01T10:00:00Z', '2026-01-01T11:00:00Z'],
  datasets: [
    { label: '成功请求', data: [3, 4], color: 'rgba(10, 200, 110, 1)' },
    { label: '失败请求', data: [1, 0], color: 'rgba(255, 70, 70, 1)' },
  ],
}

describe('chart data', () => {
  it('draws one line per dataset with the API labels and colours', () => {
    const o = hourlyOption(data, 'en', false)
    expect(o.legend.data).toEqual(['成功请求', '失败请求'])
    expect(o.series.map((s) => s.data)).toEqual([[3, 4], [1, 0]])
    expect(o.series[1].itemStyle.color).toBe('rgba(255, 70, 70, 1)')
    expect(o.xAxis.data).toHaveLength(2)
    expect(o.xAxis.data[0]).not.toBe(data.labels[0])
  })

  it('sums datasets', () => {
    expect(datasetTotals(data)).toEqual([7, 1])
  })

  it('reads trends', () => {
    expect(trendOf({ value: 1, trend: 12.345, trend_is_growth: true }, 'percent')).toEqual({ text: '+12.3%', good: true })
    expect(trendOf({ value: 1, trend: -5, trend_is_growth: false }, 'percent')).toEqual({ text: '−5%', good: false })
    // For the error rate a fall is good news: the API says growth=true when it fell.
    expect(trendOf({ value: 1, trend: -2, trend_is_growth: true }, 'points')).toEqual({ text: '−2 pp', good: true })
    expect(trendOf({ value: 0, trend: 0, trend_is_growth: true }, 'percent').text).toBe('0%')
  })

  it('writes large numbers compactly', () => {
    expect(compact(999)).toBe('999')
    expect(compact(12_345)).toBe('12.3K')
    expect(compact(1_000_000)).toBe('1M')
    expect(compact(2_500_000_000)).toBe('2.5B')
    expect(compact(1.234)).toBe('1.23')
  })
})
