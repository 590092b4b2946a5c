/** Stylesheets the anywidget bundle imports as text (esbuild's `--loader:.css=text`). */
declare module '*.css' {
  const text: string;
  export default text;
}
