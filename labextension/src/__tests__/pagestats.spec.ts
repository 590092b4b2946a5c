import { MAX_RENDER_RECORDS, pageStats, recordDrops, recordRender } from '../pagestats';

describe('pagestats', () => {
  beforeEach(() => {
    delete (globalThis as Record<string, unknown>).__nbwsStats;
  });

  it('keeps one record per rendered frame on the page-global object', () => {
    recordRender('table', 's', { offset: 7, time: 1.5 });
    recordRender('chart', 's', { offset: 9, time: 2.5 });
    const stats = (globalThis as Record<string, unknown>).__nbwsStats;
    expect(stats).toBe(pageStats());
    const renders = pageStats().renders;
    expect(renders.map(r => [r.view, r.stream, r.offset, r.time])).toEqual([
      ['table', 's', 7, 1.5],
      ['chart', 's', 9, 2.5]
    ]);
    expect(renders[0].at).toBeGreaterThan(1e12); // epoch ms
    expect(renders[1].at).toBeGreaterThanOrEqual(renders[0].at);
  });

  it('stays bounded, dropping the oldest half when full', () => {
    for (let i = 0; i < MAX_RENDER_RECORDS + 1; i++) {
      recordRender('monitor', 's', { offset: i, time: 0 });
    }
    const renders = pageStats().renders;
    expect(renders.length).toBe(MAX_RENDER_RECORDS / 2 + 1);
    expect(renders[renders.length - 1].offset).toBe(MAX_RENDER_RECORDS);
    expect(renders[0].offset).toBe(MAX_RENDER_RECORDS / 2);
  });

  it('keeps the latest drop totals per view and stream', () => {
    recordDrops('table', 's', 3, 1);
    recordDrops('table', 's', 5, 2);
    recordDrops('chart', 's', 4, 0);
    expect(pageStats().drops).toEqual({
      'table:s': { view: 'table', stream: 's', dropped: 5, conflated: 2 },
      'chart:s': { view: 'chart', stream: 's', dropped: 4, conflated: 0 }
    });
  });
});
