/**
 * DOM helpers. Everything that came from a stream, the server or the kernel is set
 * with `textContent`, never `innerHTML`, so a payload like `<img src=x onerror=...>`
 * shows literally.
 */

import type { SubscriptionStatus } from './subscription';

/** Create an element with a class and (plain) text. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** A one-line connection status with a coloured state marker. */
export class StatusLine {
  readonly node: HTMLDivElement;
  private readonly marker: HTMLSpanElement;
  private readonly text: HTMLSpanElement;

  constructor(label: string) {
    this.node = el('div', 'nbws-status');
    this.node.appendChild(el('span', 'nbws-status-label', label));
    this.marker = el('span', 'nbws-status-marker');
    this.text = el('span', 'nbws-status-text', 'connecting');
    this.node.append(this.marker, this.text);
  }

  set(status: SubscriptionStatus): void {
    this.node.dataset.state = status.state;
    this.node.classList.toggle('nbws-mod-problem', status.problem);
    this.text.textContent = status.detail;
  }

  setText(state: string, detail: string, problem: boolean): void {
    this.set({ state: state as SubscriptionStatus['state'], detail, problem });
  }
}

/** Thousands separators for counters. */
export function count(n: number): string {
  return n.toLocaleString('en-US');
}
