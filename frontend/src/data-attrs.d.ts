// The tests find inputs by data-test attributes passed through input-props.
import '@vue/runtime-dom'
declare module '@vue/runtime-dom' {
  interface InputHTMLAttributes {
    'data-test'?: string
  }
  interface TextareaHTMLAttributes {
    'data-test'?: string
  }
}
export {}
